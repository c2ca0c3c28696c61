"""``run_study``: validate, plan, run what is missing, aggregate. Resumable and failure-tolerant."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from synthmix.core.config import dump_yaml
from synthmix.core.io import atomic_write_json
from synthmix.core.paths import mark_run_root
from synthmix.experiments.config import StudyConfig, default_run_dir
from synthmix.experiments.executor import Runtime, Stage, execute
from synthmix.experiments.load import load_study
from synthmix.experiments.plan import Plan, build_plan, plan_path

STUDY_FILE = "study.yaml"


def prepare(config: str | Path | StudyConfig, run_dir: str | Path | None = None) -> tuple[StudyConfig, Plan, Path]:
    """Load + validate the study (before any work), build its plan, write study.yaml and plan.json."""
    cfg = config if isinstance(config, StudyConfig) else load_study(config)
    # Absolute from here on, and a run tree root: every stored path inside is relative to the
    # file storing it (synthmix.core.paths), never to the working directory.
    run = mark_run_root(run_dir if run_dir is not None else default_run_dir(cfg))
    plan = build_plan(cfg)
    dump_yaml(cfg, run / STUDY_FILE)
    atomic_write_json(plan_path(run), plan.as_dict())
    return cfg, plan, run


def run_study(config: str | Path | StudyConfig, run_dir: str | Path | None = None,
              verbose: bool = True, device: str | None = None, threads: int | None = None,
              jobs: int | None = None) -> dict[str, Any]:
    """Run every missing stage of the study in ``run_dir``; returns the aggregated results.

    Already-done stages are skipped (their done marker exists), a failed stage is recorded
    and blocks only the cells that need it, and results are aggregated from whatever is done.
    """
    from synthmix.experiments.results import aggregate

    cfg, plan, run = prepare(config, run_dir)
    preflight(cfg)
    # Device and threads are runtime choices, not part of any stage key: they travel in the context.
    runtime = Runtime(device=device or cfg.device, threads=threads or cfg.threads)
    import contextlib

    blas = contextlib.nullcontext()
    if runtime.threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(runtime.threads)
        # numpy / scikit-learn BLAS too (the OOD detectors): --threads 1 means one thread, not two
        # spinning OpenBLAS threads next to torch's one on a shared CPU
        blas = threadpool_limits(limits=runtime.threads)
    t0 = time.time()
    with blas:
        outcome = execute(run, plan.leaves, on_stage=_printer() if verbose else None, runtime=runtime,
                          jobs=resolve_jobs(jobs or cfg.jobs, runtime))
    summary = aggregate(run)
    summary["run"] = {"seconds": round(time.time() - t0, 2),
                      "ran": sum(v == "ran" for v in outcome.values()),
                      "skipped_done": sum(v == "done" for v in outcome.values()),
                      "failed": sum(v == "failed" for v in outcome.values()),
                      "blocked": sum(v == "blocked" for v in outcome.values())}
    atomic_write_json(run / "results" / "summary.json", summary)  # paths in it: none (movable run)
    return {**summary, "run_dir": str(run)}


def resolve_jobs(jobs: int | None, runtime: Runtime) -> int:
    """Worker processes for the cells' stages: ``jobs`` when given; else, on a CPU, one per torch
    thread (``threads`` or torch's default, the physical cores): the cells' small networks run
    faster as N one-thread processes than as one N-thread process; on a GPU, 1."""
    if jobs:
        return jobs
    if runtime.concrete_device() != "cpu":
        return 1
    import torch

    return max(1, runtime.threads or torch.get_num_threads())


def preflight(cfg) -> None:
    """Checks that need the machine, not just the file, done before any stage runs: a Stable
    Diffusion model that is neither a local folder nor in the HF cache, or a missing adapter /
    token folder, stops the study here, not after the scan and the real-only cells."""
    from synthmix.core.errors import ConfigError

    for name, gen in cfg.generators.items():
        if gen.type not in ("text2img", "dafusion", "lora", "diffmix"):
            continue
        from synthmix.generation.sd.backend import preflight as sd_preflight

        try:
            sd_preflight(gen.type, gen.generate)
        except ConfigError as err:
            msg = str(err)
            field, _, problem = msg.partition(": ")
            if field.startswith("generate."):
                raise ConfigError(f"generators.{name}.{field}: {problem}") from None
            raise ConfigError(f"generators.{name}.generate.model: {msg.split(': ', 1)[-1]}") from None


def _printer():
    from synthmix.core.log import console

    starts: dict[str, float] = {}
    colours = {"ran": "green", "done": "dim", "failed": "bold red", "blocked": "red", "busy": "yellow"}

    def show(i: int, n: int, stage: Stage, state: str) -> None:
        # One line per stage, not a live bar: the stages draw their own progress bars, and rich
        # allows one live display at a time.
        if state == "start":
            starts[stage.key] = time.time()
            console().print(f"[bold][{i + 1}/{n}][/] {stage.label} ...", highlight=False)
            return
        took = f" ({time.time() - starts[stage.key]:.1f} s)" if stage.key in starts else ""
        word = {"done": "already done", "busy": "running elsewhere"}.get(state, state)
        if state == "done":
            console().print(f"[dim][{i}/{n}] {stage.label}: {word}[/]", highlight=False)
        else:
            console().print(f"[{colours.get(state, 'white')}][{i}/{n}] {stage.label}: {word}{took}[/]",
                            highlight=False)

    return show
