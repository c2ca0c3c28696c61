"""Which process am I? Rank / world size from the launcher, checked before any work is split.

Launchers (``torchrun``, ``accelerate launch``, Slurm + either) start N copies of the same
command and tell each its place through the environment: ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``. :func:`init_world` reads them, starts the process group through accelerate's
``PartialState`` (``cpu=True`` when there is no CUDA, else a CPU run under torchrun silently
becomes N single processes that all think they are rank 0), and cross-checks the two views:

- ``PartialState().num_processes`` must equal ``WORLD_SIZE`` and ``process_index`` must equal
  ``RANK``;
- the ranks gathered from every process must be ``0 .. N-1``, each once.

Any mismatch stops with a :class:`~synthmix.core.errors.ConfigError` that says what each side
believes, before a single image is made twice. Without launcher variables the run is one
process (rank 0 of 1) and nothing distributed is started.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
DEFAULT_TIMEOUT_S = 3 * 3600  # collectives wait this long (a slow rank is not an error)


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``world_size`` (``local_rank`` on its node).

    ``launched`` is True when a launcher started the process (a process group exists when
    ``world_size > 1``); ``device`` is the accelerator this process should use.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launcher_env(environ: Mapping[str, str] | None = None) -> dict[str, int] | None:
    """``{"world_size", "rank", "local_rank"}`` set by a launcher, or None when none is set.

    Raises ConfigError on a half-set or malformed environment (e.g. RANK without WORLD_SIZE).
    """
    from synthmix.core.errors import ConfigError

    env = os.environ if environ is None else environ
    present = {k: env[k] for k in ENV_VARS if env.get(k, "") != ""}
    if not present:
        return None
    if "WORLD_SIZE" not in present or "RANK" not in present:
        raise ConfigError(f"launcher environment is incomplete: {present} (need WORLD_SIZE and RANK, "
                          "as torchrun / accelerate launch set them)")
    try:
        out = {"world_size": int(present["WORLD_SIZE"]), "rank": int(present["RANK"]),
               "local_rank": int(present.get("LOCAL_RANK", present["RANK"]))}
    except ValueError:
        raise ConfigError(f"launcher environment is not numeric: {present}") from None
    if out["world_size"] < 1 or not 0 <= out["rank"] < out["world_size"]:
        raise ConfigError(f"launcher environment: RANK={out['rank']} WORLD_SIZE={out['world_size']}: "
                          "need 0 <= RANK < WORLD_SIZE")
    return out


def check_world(env: Mapping[str, int], num_processes: int, process_index: int) -> None:
    """Raise ConfigError unless the launcher's view (``env``) and accelerate's agree."""
    from synthmix.core.errors import ConfigError

    if num_processes != env["world_size"] or process_index != env["rank"]:
        raise ConfigError(
            f"launcher/world-size mismatch: the launcher set WORLD_SIZE={env['world_size']} RANK={env['rank']}, "
            f"but accelerate sees {num_processes} process(es) and calls this one rank {process_index}; "
            "every process would redo the same work. On a machine without GPUs accelerate must be told to use "
            "the CPU (cpu=True; synthmix does this unless CUDA is visible); launch with `torchrun "
            "--nproc-per-node N -m synthmix ...` or `accelerate launch --multi_gpu --num_processes N -m synthmix ...`")


def check_ranks(ranks: list[int], world_size: int) -> None:
    """Raise ConfigError unless ``ranks`` (gathered from every process) are 0..world_size-1 once each."""
    from synthmix.core.errors import ConfigError

    if sorted(ranks) != list(range(world_size)):
        raise ConfigError(f"launcher/world-size mismatch: the {world_size} processes report ranks "
                          f"{sorted(ranks)} (each of 0..{world_size - 1} must appear exactly once); "
                          "two processes would make the same images")


def resolve_cli_world(rank: int | None, world_size: int | None,
                      environ: Mapping[str, str] | None = None) -> tuple[int, int, bool]:
    """Combine ``--rank/--world-size`` flags with the launcher environment: (rank, world_size, launched).

    Flags alone select a manual shard (independent processes, e.g. a Slurm array; no process
    group). Flags that contradict a launcher's variables are an error.
    """
    from synthmix.core.errors import ConfigError

    env = launcher_env(environ)
    if env is None:
        ws = 1 if world_size is None else world_size
        r = 0 if rank is None else rank
        if ws < 1 or not 0 <= r < ws:
            raise ConfigError(f"--rank {r} / --world-size {ws}: need 0 <= rank < world_size")
        return r, ws, False
    for flag, given, key in (("--rank", rank, "rank"), ("--world-size", world_size, "world_size")):
        if given is not None and given != env[key]:
            raise ConfigError(f"launcher/world-size mismatch: {flag} {given} but the launcher set "
                              f"{key.upper()}={env[key]}; drop the flag under torchrun / accelerate launch")
    return env["rank"], env["world_size"], True


def init_world(cpu: bool | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
               environ: Mapping[str, str] | None = None) -> World:
    """Detect and check this process's place; start the process group when launched with N > 1.

    ``cpu``: force the gloo/CPU path (default: CPU unless CUDA is available). Raises
    ConfigError on any launcher/world-size mismatch (see the module docstring).
    """
    env = launcher_env(environ)
    if env is None or env["world_size"] == 1 and env["rank"] == 0:
        device = "cpu"
        if env is not None:
            import torch

            device = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
        return World(launched=env is not None, device=device)
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    if cpu is None:
        cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s))
    # A process that exits with a live gloo group can abort ("terminate called without an
    # active exception") and torchrun then reports the job as failed: close it at exit.
    atexit.register(shutdown)
    check_world(env, state.num_processes, state.process_index)
    if state.num_processes > 1:
        ranks: list[int | None] = [None] * state.num_processes
        torch.distributed.all_gather_object(ranks, state.process_index)
        check_ranks([int(r) for r in ranks], state.num_processes)
    return World(rank=state.process_index, world_size=state.num_processes,
                 local_rank=state.local_process_index, launched=True, device=str(state.device))


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def finish(code: int = 0) -> None:
    """End a launched process: close the process group (every rank first waits for the others),
    flush stdout / stderr and leave without the interpreter's finalisation, during which gloo's
    worker threads can still be torn down and abort the process ("terminate called without an
    active exception", which torchrun reports as a failed job; seen on a loaded 2-core CPU). For
    the last line of a torchrun entry point; a no-op exit code path for plain processes too."""
    import sys

    shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def shutdown() -> None:
    """Close the process group (idempotent; registered at exit by :func:`init_world`).

    Every rank first waits for the others: a rank that tears its gloo pairs down while a peer is
    still finishing (writing its results) could abort the peer's exit ("terminate called without
    an active exception"), which torchrun reports as a failed job; seen on a loaded 2-core CPU."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        except RuntimeError:  # a peer is gone (it failed): nothing to wait for
            pass
        dist.destroy_process_group()
