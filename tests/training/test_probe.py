"""Linear probe on cached features: one feature pass serves every setup and seed; the probe
matches scikit-learn's logistic regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthmix.core.errors import ConfigError
from synthmix.models import create_model
from synthmix.training.probe import ProbeConfig, backbone_fingerprint, extract_cached, train_probe


class Counting(torch.nn.Module):
    """Wraps a Classifier and counts forward_features calls and images."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls, self.images = 0, 0
        self.feature_dim, self.num_classes = model.feature_dim, model.num_classes

    @property
    def backbone(self):
        return self.model.backbone

    def forward_features(self, x):
        self.calls += 1
        self.images += x.shape[0]
        return self.model.forward_features(x)


@pytest.fixture()
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (30, 3, 16, 16), generator=g, dtype=torch.uint8)
    ids = [f"img{i:02d}" for i in range(30)]
    torch.manual_seed(0)
    return x, ids, create_model("tiny_cnn", 3, input_size=16)


def test_second_setup_and_seed_do_not_recompute(tmp_path, data):
    x, ids, model = data
    m = Counting(model)
    setups = {"real": list(range(0, 20)), "real+syn": list(range(0, 30)), "syn-only": list(range(10, 30))}
    loaded: list[list[int]] = []

    def loader_for(idx):
        return lambda missing: (loaded.append([idx[k] for k in missing]), x[[idx[k] for k in missing]])[1]

    feats = {}
    for seed in range(3):
        for name, idx in setups.items():
            feats[name, seed] = extract_cached(m, loader_for(idx), [ids[i] for i in idx], tmp_path,
                                               preprocess_key="16px-pad", batch_size=8)
    # 20 images for `real`, then only the 10 new ones for `real+syn`, nothing afterwards
    assert m.images == 30 and m.calls == 3 + 2
    assert loaded == [list(range(20)), list(range(20, 30))]
    with torch.no_grad():
        direct = model.eval().forward_features(x.float().div(255).sub(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                                               .div(torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))).numpy()
    np.testing.assert_allclose(feats["real+syn", 2], direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(feats["syn-only", 0], feats["real+syn", 1][10:])


def test_key_changes_with_preprocessing_normalisation_and_weights(tmp_path, data):
    x, ids, model = data
    m = Counting(model)
    extract_cached(m, x, ids, tmp_path, preprocess_key="a")
    extract_cached(m, x, ids, tmp_path, preprocess_key="b")
    extract_cached(m, x, ids, tmp_path, preprocess_key="b", normalization="none")
    assert m.images == 90
    fp = backbone_fingerprint(model)
    with torch.no_grad():
        model.backbone[0].weight.add_(0.1)  # other weights: another cache
    assert backbone_fingerprint(model) != fp
    extract_cached(m, x, ids, tmp_path, preprocess_key="a")
    assert m.images == 120
    # head weights do not change the backbone's features: same cache
    with torch.no_grad():
        model.head[-1].weight.add_(1.0)
    extract_cached(m, x, ids, tmp_path, preprocess_key="a")
    assert m.images == 120
    bn = torch.nn.BatchNorm2d(3)  # 0-dim buffers (num_batches_tracked) hash too
    assert backbone_fingerprint(bn) == backbone_fingerprint(torch.nn.BatchNorm2d(3))


def test_corrupt_cache_file_is_named(tmp_path, data):
    x, ids, model = data
    extract_cached(model, x[:2], ids[:2], tmp_path, preprocess_key="p")
    bad = next(tmp_path.rglob("img00.npy"))
    bad.write_bytes(b"not npy")
    with pytest.raises(ConfigError, match="img00.npy: unreadable cached feature"):
        extract_cached(model, x[:2], ids[:2], tmp_path, preprocess_key="p")


def _blobs(n=90, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (3, d))
    y = np.repeat(np.arange(3), n // 3)
    f = centres[y] * rng.uniform(0.5, 3, d) + rng.normal(0, 1.5, (n, d)) + 5
    return f.astype(np.float32), y


def test_probe_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    f, y = _blobs()
    l2 = 0.05
    res = train_probe(f, y, ProbeConfig(l2=l2, max_iter=500))
    z = StandardScaler().fit_transform(f)
    sk = LogisticRegression(C=1 / (l2 * len(y)), max_iter=5000, tol=1e-10).fit(z, y)
    ours = torch.softmax(res.logits(f), 1).numpy()
    np.testing.assert_allclose(ours, sk.predict_proba(z), atol=2e-4)


def test_attach_gives_the_probe_logits_on_raw_features(data):
    x, ids, model = data
    f, y = _blobs(n=30, d=model.feature_dim)
    res = train_probe(f, y, val=(f, y))
    assert res.history["val_acc"] == res.history["train_acc"] > 0.5
    model.eval()
    res.attach(model)
    with torch.no_grad():
        np.testing.assert_allclose(model.forward_head(torch.from_numpy(f)).numpy(), res.logits(f).numpy(),
                                   rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="does not fit"):
        train_probe(f[:, :3], y).attach(model)


def test_balanced_class_weight_and_bad_labels():
    f, y = _blobs()
    keep = np.r_[np.arange(30), np.arange(30, 40), np.arange(60, 90)]  # class 1 rare
    r = train_probe(f[keep], y[keep], ProbeConfig(class_weight="balanced"))
    assert r.weight.shape == (3, 6)
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        train_probe(f, y, num_classes=2)
