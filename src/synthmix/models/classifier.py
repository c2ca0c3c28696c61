"""A backbone + a linear head, with features and head exposed separately."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """``backbone`` maps images [N, 3, H, W] to features [N, feature_dim]; ``head`` to logits."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int,
                 head_dropout: float = 0.0, hidden: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        if hidden:  # the fruit study's fc -> dropout -> fc head
            self.head = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True),
                                      nn.Dropout(head_dropout), nn.Linear(hidden, num_classes))
        else:
            self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(feature_dim, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] float -> [N, feature_dim]."""
        return self.backbone(x)

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        """[N, feature_dim] -> logits [N, num_classes]."""
        return self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def gradcam_layer(self) -> nn.Module:
        """The last convolutional layer (Grad-CAM target)."""
        convs = [m for m in self.backbone.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1]
