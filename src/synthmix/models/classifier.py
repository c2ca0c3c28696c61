"""A backbone + a head, with features and head exposed separately.

Contract (others rely on it): ``forward_features(x [N,3,H,W] float) -> [N, feature_dim]``,
``forward_head(f [N, feature_dim]) -> logits [N, num_classes]``, ``gradcam_layer() -> nn.Module``
(the module whose output is the last spatial feature map [N, C', h, w]).
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``backbone`` maps images [N, 3, H, W] to features [N, feature_dim]; ``head`` to logits."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int,
                 head_dropout: float = 0.0, hidden: int | None = None,
                 cam_layer: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        # Kept out of the module tree (it is already inside ``backbone``): a plain attribute.
        object.__setattr__(self, "_cam_layer", cam_layer)
        if hidden:  # the fruit study's fc -> dropout -> fc head
            self.head = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(),
                                      nn.Dropout(head_dropout), nn.Linear(hidden, num_classes))
        else:
            self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(feature_dim, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] float (normalised) -> [N, feature_dim]."""
        return self.backbone(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        """[N, feature_dim] -> logits [N, num_classes]."""
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def gradcam_layer(self) -> nn.Module:
        """The Grad-CAM target: the module producing the last spatial feature map.

        Defaults to the last ``Conv2d`` of the backbone when the builder named none.
        """
        if self._cam_layer is not None:
            return self._cam_layer
        convs = [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1]
