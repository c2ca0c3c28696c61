"""Curation: score synthetic images and sort them into in_dist / near_ood / reject.

``scorers`` (pure functions over arrays), ``sort`` (thresholds calibrated on real validation
images, role assignment), ``grid`` (a PNG contact sheet per role), ``run`` (the whole step
over a manifest: ``curate_manifest``).
"""
