"""Run a DAG of hash-keyed stages: each once, resumable after a kill, failures contained.

A stage's outputs live in ``<run_dir>/stages/<key>/``. Markers in that directory:

- ``config.json``  what the key hashes (kind, label, resolved config, dependency keys);
- ``running.pid``  created exclusively while a process works on the stage (pid + host);
- ``done.json``    written atomically, *after* every output: its presence means "done";
- ``failed.json``  one-line error (+ ``error.txt`` with the traceback); retried on the next run.

Every start / done / failure is appended to ``<run_dir>/events.jsonl`` (the execution log).
Several processes may run the same study at once (e.g. one per GPU): a stage locked by a
live process is left to it, and its dependents wait for its done marker.

``execute(..., jobs=N)`` runs the cells' small stages (kinds in ``PARALLEL_KINDS``: training and
evaluating one classifier) in N worker processes of one thread each, and every other stage (the
generator's training, generation, curation...) in this process with all its threads while no
worker runs: a small CNN step is far from filling two cores with threads, a diffusion model's is
not.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthmix.core.io import append_jsonl, atomic_write_json, atomic_write_text
from synthmix.experiments.keys import stage_key

DONE, FAILED, LOCK, ERROR, CONFIG = "done.json", "failed.json", "running.pid", "error.txt", "config.json"
EVENTS = "events.jsonl"
# Stage kinds that run in the worker processes of ``execute(jobs=N > 1)``, one thread each.
PARALLEL_KINDS = frozenset({"train", "evaluate"})


@dataclass(frozen=True)
class Runtime:
    """Settings of this machine and session, never part of a stage key: a study resumed on another
    machine (or with another device) reuses what is done."""

    device: str = "auto"
    threads: int | None = None

    def concrete_device(self) -> str:
        from synthmix.core.device import pick_device

        return pick_device(self.device)


@dataclass
class StageContext:
    """What a stage function gets: its output dir, its config, its dependencies' dirs by name,
    the run directory (absolute) and the runtime settings."""

    out_dir: Path
    config: dict[str, Any]
    deps: dict[str, Path]
    run_dir: Path
    runtime: Runtime = field(default_factory=Runtime)


@dataclass(eq=False)
class Stage:
    """One unit of work. ``deps`` maps a name (how ``fn`` refers to it) to an upstream stage."""

    kind: str
    label: str
    config: dict[str, Any]
    fn: Callable[[StageContext], dict[str, Any] | None]
    deps: dict[str, Stage] = field(default_factory=dict)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = stage_key(self.kind, self.config, [f"{n}={d.key}" for n, d in sorted(self.deps.items())])


def stage_dir(run_dir: str | Path, key: str) -> Path:
    return Path(run_dir) / "stages" / key


def is_done(run_dir: str | Path, key: str) -> bool:
    return (stage_dir(run_dir, key) / DONE).exists()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_holder(run_dir: str | Path, key: str) -> dict[str, Any] | None:
    """The live process working on a stage, or None (no lock, or a stale one from a killed run)."""
    p = stage_dir(run_dir, key) / LOCK
    try:
        info = json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if info.get("host") != socket.gethostname():
        return info  # another machine: trust the lock (its liveness cannot be checked from here)
    return info if pid_alive(int(info.get("pid", -1))) else None


def topo_order(leaves: Iterable[Stage]) -> list[Stage]:
    """Every stage reachable from ``leaves`` once, dependencies first, in first-seen order."""
    order: list[Stage] = []
    seen: set[str] = set()

    def visit(s: Stage) -> None:
        if s.key in seen:
            return
        seen.add(s.key)
        for d in s.deps.values():
            visit(d)
        order.append(s)

    for leaf in leaves:
        visit(leaf)
    return order


def _log(run_dir: Path, event: str, stage: Stage, **extra: Any) -> None:
    append_jsonl(run_dir / EVENTS, [{"event": event, "key": stage.key, "kind": stage.kind,
                                     "label": stage.label, "pid": os.getpid(), "t": time.time(), **extra}])


def _try_lock(d: Path) -> bool:
    lock = d / LOCK
    info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                held = json.loads(lock.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                held = {}
            if held.get("host", socket.gethostname()) == socket.gethostname() and \
                    not pid_alive(int(held.get("pid", -1))):
                lock.unlink(missing_ok=True)  # stale: its process was killed
                continue
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(info)
        return True
    return False


def run_stage(run_dir: Path, stage: Stage, runtime: Runtime | None = None) -> str:
    """Run one stage unless done or held by a live process. Returns done / ran / failed / busy."""
    d = stage_dir(run_dir, stage.key)
    if (d / DONE).exists():
        return "done"
    d.mkdir(parents=True, exist_ok=True)
    if not _try_lock(d):
        return "busy"
    try:
        if (d / DONE).exists():  # finished by another process between our check and the lock
            return "done"
        if (d / FAILED).exists():
            # A failed attempt's outputs may be inconsistent: retry from scratch. (A *killed* attempt
            # leaves no failed.json: its outputs are kept, so the stage resumes from its checkpoints.)
            _clear(d)
        atomic_write_json(d / CONFIG, {"kind": stage.kind, "label": stage.label, "config": stage.config,
                                       "deps": {n: s.key for n, s in stage.deps.items()}})
        _log(run_dir, "start", stage)
        t0, c0 = time.time(), time.process_time()
        try:
            ctx = StageContext(out_dir=d, config=stage.config, run_dir=run_dir, runtime=runtime or Runtime(),
                               deps={n: stage_dir(run_dir, s.key) for n, s in stage.deps.items()})
            summary = stage.fn(ctx) or {}
        except Exception as err:  # noqa: BLE001 - a failed stage must not stop the other cells
            message = f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__
            atomic_write_text(d / ERROR, traceback.format_exc())
            atomic_write_json(d / FAILED, {"message": message, "traceback": ERROR, "at": time.time()})
            _log(run_dir, "failed", stage, message=message)
            return "failed"
        atomic_write_json(d / DONE, {"key": stage.key, "kind": stage.kind, "label": stage.label,
                                     "seconds": round(time.time() - t0, 3),
                                     "cpu_seconds": round(time.process_time() - c0, 3), "finished": time.time(),
                                     "summary": summary})
        _log(run_dir, "done", stage, seconds=round(time.time() - t0, 3))
        return "ran"
    finally:
        (d / LOCK).unlink(missing_ok=True)


def _clear(d: Path) -> None:
    import shutil

    for p in d.iterdir():
        if p.name == LOCK:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def execute(run_dir: str | Path, leaves: Sequence[Stage],
            on_stage: Callable[[int, int, Stage, str], None] | None = None,
            wait_for_others: bool = True, poll_s: float = 2.0,
            runtime: Runtime | None = None, jobs: int = 1) -> dict[str, str]:
    """Run every stage needed by ``leaves``; returns ``{key: outcome}``.

    Outcomes: ``done`` (was already done), ``ran``, ``failed``, ``blocked`` (an upstream stage
    failed), ``busy`` (another live process holds it and ``wait_for_others`` is False).
    ``jobs > 1``: stages of ``PARALLEL_KINDS`` run in that many single-threaded worker processes
    (see the module docstring); the outcomes are the same as with ``jobs=1``.
    """
    run_dir = Path(run_dir)
    order = topo_order(leaves)
    if jobs > 1:
        return _execute_parallel(run_dir, order, on_stage, wait_for_others, poll_s, runtime or Runtime(), jobs)
    outcome: dict[str, str] = {}
    pending = list(order)
    while pending:
        locked: list[Stage] = []
        for i, s in enumerate(pending):
            n = len(order) - len(pending) + i
            if any(outcome.get(d.key) in ("failed", "blocked") for d in s.deps.values()):
                outcome[s.key] = "blocked"
                _log(run_dir, "blocked", s, message="an upstream stage failed")
            elif any(outcome.get(d.key) == "busy" for d in s.deps.values()):
                outcome[s.key] = "busy"
            else:
                if on_stage:
                    on_stage(n, len(order), s, "start")
                outcome[s.key] = run_stage(run_dir, s, runtime)
                if outcome[s.key] == "busy":
                    locked.append(s)
            if on_stage:
                on_stage(n + 1, len(order), s, outcome[s.key])
        if not locked or not wait_for_others:
            break
        # Another process works on some stages: wait until one of them is released, then retry.
        while all(lock_holder(run_dir, s.key) and not is_done(run_dir, s.key) for s in locked):
            time.sleep(poll_s)
        pending = [s for s in order if outcome.get(s.key) == "busy"]
        for s in pending:
            outcome.pop(s.key)
    return outcome


def _init_worker(threads: int) -> None:
    """A worker process of ``execute(jobs=N)``: ``threads`` torch threads and as many BLAS threads
    (numpy / scikit-learn: the OOD detectors), set before any work."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    global _BLAS_LIMIT
    _BLAS_LIMIT = threadpool_limits(limits=threads)  # kept for the life of the worker


_BLAS_LIMIT = None


def _execute_parallel(run_dir: Path, order: list[Stage], on_stage, wait_for_others: bool, poll_s: float,
                      runtime: Runtime, jobs: int) -> dict[str, str]:
    """``execute`` with ``jobs`` worker processes for the stages of ``PARALLEL_KINDS``.

    A ready stage of another kind has priority (it is usually on the critical path: the generator,
    then generation): no new worker task starts while one waits, and it runs here, with this
    process's threads, once the workers are idle. A stage another process holds (``busy``) is
    waited for (or left, with ``wait_for_others=False``), as in the serial loop."""
    import concurrent.futures as cf
    import multiprocessing as mp

    worker_runtime = Runtime(device=runtime.device, threads=1)
    outcome: dict[str, str] = {}
    waiting = list(order)
    running: dict[cf.Future, Stage] = {}
    held: list[Stage] = []  # locked by another live process
    finished = 0

    def report(s: Stage, state: str) -> None:
        nonlocal finished
        outcome[s.key] = state
        finished += 1
        if on_stage:
            on_stage(finished, len(order), s, state)

    def start(s: Stage) -> None:
        if on_stage:
            on_stage(finished, len(order), s, "start")

    def ready(s: Stage) -> bool:  # every dependency done or ran
        return all(outcome.get(d.key) in ("done", "ran") for d in s.deps.values())

    pool = cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                  initargs=(1,))
    try:
        while waiting or running or held:
            progressed = False
            # a ready stage that runs here (not in a worker) holds back new worker tasks
            heavy_ready = any(s.kind not in PARALLEL_KINDS and ready(s) and not is_done(run_dir, s.key)
                              for s in waiting)
            for s in list(waiting):
                deps = [outcome.get(d.key) for d in s.deps.values()]
                if any(o in ("failed", "blocked") for o in deps):
                    waiting.remove(s)
                    _log(run_dir, "blocked", s, message="an upstream stage failed")
                    report(s, "blocked")
                    progressed = True
                elif any(o == "busy" for o in deps):
                    waiting.remove(s)
                    report(s, "busy")
                    progressed = True
                elif ready(s):
                    if is_done(run_dir, s.key):
                        waiting.remove(s)
                        report(s, "done")
                        progressed = True
                    elif s.kind not in PARALLEL_KINDS:
                        if not running:
                            waiting.remove(s)
                            start(s)
                            state = run_stage(run_dir, s, runtime)
                            if state == "busy":
                                held.append(s)
                            else:
                                report(s, state)
                            progressed = True
                            break  # its dependents may be ready now: scan again from the top
                    elif not heavy_ready and len(running) < jobs:
                        waiting.remove(s)
                        start(s)
                        running[pool.submit(run_stage, run_dir, s, worker_runtime)] = s
                        progressed = True
            if progressed:
                continue
            if running:
                done, _ = cf.wait(list(running), timeout=poll_s if held else None,
                                  return_when=cf.FIRST_COMPLETED)
                for f in done:
                    s = running.pop(f)
                    state = f.result()
                    if state == "busy":
                        held.append(s)
                    else:
                        report(s, state)
                continue
            if held:
                if not wait_for_others:
                    for s in held:
                        report(s, "busy")
                    held.clear()
                    continue
                while all(lock_holder(run_dir, s.key) and not is_done(run_dir, s.key) for s in held):
                    time.sleep(poll_s)
                waiting = [s for s in order if s in held or s in waiting]  # back in topological order
                held.clear()
                continue
            raise RuntimeError(f"execute: no stage can start ({len(waiting)} waiting); a dependency cycle?")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outcome
