"""Contrastive losses as pure functions: ``z`` in, scalar out (shapes in each docstring)."""

from synthmix.training.losses.simclr import nt_xent_loss
from synthmix.training.losses.supcon import supcon_hard_negative_loss, supcon_loss

__all__ = ["nt_xent_loss", "supcon_hard_negative_loss", "supcon_loss"]
