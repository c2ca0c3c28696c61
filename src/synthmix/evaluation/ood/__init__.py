"""OOD detection from cached features / logits: detectors (higher score = more in-distribution),
metrics (AUROC, AUPR, FPR@95TPR) and score histograms. Detectors are fit on train features only."""
