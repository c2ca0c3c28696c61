"""Losses as pure functions (shapes in each docstring): contrastive (``z`` in, scalar out) and
outlier regularisers (logits in, scalar out)."""

from synthmix.training.losses.outlier import energy_margin_loss, oe_loss
from synthmix.training.losses.simclr import nt_xent_loss
from synthmix.training.losses.supcon import supcon_hard_negative_loss, supcon_loss

__all__ = ["energy_margin_loss", "nt_xent_loss", "oe_loss", "supcon_hard_negative_loss", "supcon_loss"]
