"""Evaluation: metrics, curves, calibration, Grad-CAM, cached features, multi-seed statistics.

Modules: ``metrics`` (classification_metrics), ``curves`` (ROC / PR / confusion PNGs),
``calibration`` (ECE + reliability diagram), ``gradcam`` (maps and overlays), ``features``
(features + logits in batches), ``evaluate`` (evaluate_model, evaluate_splits), ``stats``
(mean_ci), ``crossdata`` (another ImageFolder, classes matched by name).
"""
