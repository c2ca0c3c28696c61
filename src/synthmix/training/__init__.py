"""Training: one plain loop (``loop.fit``), its config, mixes of real and synthetic rows, runs.

Modules: ``config`` (TrainConfig), ``loop`` (fit -> FitResult), ``checkpoint`` (atomic save /
weights-only load), ``mixes`` (MixConfig, select_training_rows), ``train`` (TrainRunConfig,
train_run, train_seeds). Importing this package imports nothing heavy.
"""
