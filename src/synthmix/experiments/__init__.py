"""Studies: one YAML -> a grid of cells -> a DAG of hash-keyed, resumable stages -> saved results.

Public entry points: :func:`synthmix.experiments.runner.run_study`,
:func:`synthmix.experiments.config.load_study`, :func:`synthmix.experiments.status.study_status`.
"""
