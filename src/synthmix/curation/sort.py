"""Thresholds calibrated on real validation images, and the role of each synthetic image.

Rules (in order): ``reject`` if the pixels are degenerate (NaN, black, white, blank) or the
feature is farther from its class centroid than ``reject_factor`` x the largest distance of
any real validation image; ``near_ood`` if the classifier's confidence for the intended class
is below the ``conf_percentile``-th percentile of real validation confidences, or its centroid
distance is above the ``dist_percentile``-th percentile of real validation distances, or (with
``require_agreement``) the classifier predicts another class; otherwise ``in_dist`` — except
that an image the generator made as near-OOD is never promoted to ``in_dist``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from pydantic import Field

from synthmix.core.config import StrictModel


class SortConfig(StrictModel):
    """Calibration percentiles and pixel checks of the curation step."""

    conf_percentile: float = Field(5.0, ge=0, le=100, description="near_ood below this percentile of real val confidence")
    dist_percentile: float = Field(95.0, ge=0, le=100, description="near_ood above this percentile of real val centroid distance")
    reject_factor: float = Field(1.5, ge=1.0, description="reject beyond this x the largest real val centroid distance")
    require_agreement: bool = Field(True, description="near_ood when the predicted class differs from the intended one")
    min_std: float = Field(0.02, ge=0, description="reject as blank below this pixel std (0-1 scale)")
    max_dark: float = Field(0.9, ge=0, le=1, description="reject as black above this fraction of dark pixels")
    max_bright: float = Field(0.9, ge=0, le=1, description="reject as white above this fraction of bright pixels")


@dataclass(frozen=True)
class Thresholds:
    """Calibrated on real validation images; stored next to the curated manifest."""

    min_confidence: float
    max_centroid_dist: float
    reject_centroid_dist: float
    n_val: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(val_confidence: np.ndarray, val_centroid_dist: np.ndarray, cfg: SortConfig) -> Thresholds:
    """Thresholds from real validation images' confidences [N] and centroid distances [N]."""
    c = np.asarray(val_confidence, dtype=np.float64)
    d = np.asarray(val_centroid_dist, dtype=np.float64)
    if len(c) == 0 or len(d) != len(c):
        raise ValueError("calibrate needs real validation scores (none given)")
    return Thresholds(float(np.percentile(c, cfg.conf_percentile)), float(np.percentile(d, cfg.dist_percentile)),
                      float(d.max() * cfg.reject_factor), len(c))


def assign_role(confidence: float, centroid_dist: float, predicted: int, intended: int,
                pixel_problem: str | None, th: Thresholds, cfg: SortConfig,
                planned: str | None = None) -> tuple[str, str]:
    """(role, reason) of one synthetic image; see the module docstring for the rules.

    ``planned``: the role the generator gave the image. An image made as near-OOD by
    construction (interpolated classes, high strength) stays near-OOD (or is rejected): it is
    never promoted to in-distribution because the classifier happens to like it."""
    role, reason = _sort(confidence, centroid_dist, predicted, intended, pixel_problem, th, cfg)
    if planned == "near_ood" and role == "in_dist":
        return "near_ood", "generated as near-OOD (never promoted to in-distribution)"
    return role, reason


def _sort(confidence: float, centroid_dist: float, predicted: int, intended: int,
          pixel_problem: str | None, th: Thresholds, cfg: SortConfig) -> tuple[str, str]:
    if pixel_problem:
        return "reject", pixel_problem
    if not (np.isfinite(confidence) and np.isfinite(centroid_dist)):
        return "reject", "non-finite model output"
    if centroid_dist > th.reject_centroid_dist:
        return "reject", f"centroid distance {centroid_dist:.3f} > {th.reject_centroid_dist:.3f}"
    reasons = []
    if confidence < th.min_confidence:
        reasons.append(f"confidence {confidence:.3f} < {th.min_confidence:.3f}")
    if centroid_dist > th.max_centroid_dist:
        reasons.append(f"centroid distance {centroid_dist:.3f} > {th.max_centroid_dist:.3f}")
    if cfg.require_agreement and predicted != intended:
        reasons.append(f"predicted class {predicted} != intended {intended}")
    if reasons:
        return "near_ood", "; ".join(reasons)
    return "in_dist", "within real validation range"


def translation_role(sorted_role: str, reason: str) -> tuple[str, str]:
    """Role of a translated image (``role: translation``, Diff-Mix): it keeps its own role, whatever
    the sorter says (it is meant to look like two classes, so it is never promoted to in_dist or
    demoted to near_ood); only a ``reject`` (degenerate pixels, far from every real image) stands."""
    if sorted_role == "reject":
        return "reject", reason
    return "translation", f"translation kept (sorter: {sorted_role}; {reason})"
