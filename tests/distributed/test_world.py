"""Rank / world-size detection and its guards (launcher/world-size mismatch -> clear error)."""

from __future__ import annotations

import json

import pytest
from dist_helpers import HERE, torchrun

from synthmix.core.errors import ConfigError
from synthmix.distributed import check_ranks, check_world, init_world, launcher_env, resolve_cli_world


def test_no_launcher_is_one_process():
    assert launcher_env({}) is None
    world = init_world(environ={})
    assert (world.rank, world.world_size, world.launched, world.is_main) == (0, 1, False, True)


def test_launcher_env_is_read_and_checked():
    assert launcher_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == \
        {"world_size": 4, "rank": 3, "local_rank": 1}
    with pytest.raises(ConfigError, match="incomplete.*RANK"):
        launcher_env({"RANK": "1"})
    with pytest.raises(ConfigError, match="RANK=2 WORLD_SIZE=2"):
        launcher_env({"WORLD_SIZE": "2", "RANK": "2"})
    with pytest.raises(ConfigError, match="not numeric"):
        launcher_env({"WORLD_SIZE": "two", "RANK": "0"})


def test_every_process_rank_zero_is_refused():
    env = {"world_size": 2, "rank": 1, "local_rank": 1}
    check_world(env, 2, 1)  # agreement: no error
    with pytest.raises(ConfigError, match=r"mismatch.*WORLD_SIZE=2 RANK=1.*sees 1 process\(es\).*rank 0"):
        check_world(env, 1, 0)
    check_ranks([1, 0, 2], 3)
    with pytest.raises(ConfigError, match=r"ranks \[0, 0\]"):
        check_ranks([0, 0], 2)


def test_cli_flags_against_the_launcher():
    assert resolve_cli_world(None, None, {}) == (0, 1, False)
    assert resolve_cli_world(1, 3, {}) == (1, 3, False)  # manual shard (e.g. a Slurm array task)
    assert resolve_cli_world(None, None, {"WORLD_SIZE": "2", "RANK": "1"}) == (1, 2, True)
    with pytest.raises(ConfigError, match="--world-size 4 but the launcher set WORLD_SIZE=2"):
        resolve_cli_world(None, 4, {"WORLD_SIZE": "2", "RANK": "1"})
    with pytest.raises(ConfigError, match="need 0 <= rank < world_size"):
        resolve_cli_world(3, 2, {})


@pytest.mark.slow
def test_torchrun_cpu_without_cpu_flag_is_caught(tmp_path):
    """The PITFALLS trap for real: accelerate not told to use the CPU under a 2-process torchrun
    reports 1 process / rank 0 in both; init_world stops both. With cpu=True: ranks 0 and 1."""
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    res = torchrun(2, str(HERE / "world_worker.py"), str(bad), "0")
    assert res.returncode != 0
    # the first failing rank makes torchrun stop the other, which may not get to print
    assert "launcher/world-size mismatch: the launcher set WORLD_SIZE=2" in res.stderr, res.stderr[-3000:]
    assert not list(bad.iterdir())
    res = torchrun(2, str(HERE / "world_worker.py"), str(good), "1")
    assert res.returncode == 0, res.stderr[-3000:]
    seen = sorted((json.loads(p.read_text())["rank"], json.loads(p.read_text())["world_size"])
                  for p in good.glob("rank*.json"))
    assert seen == [(0, 2), (1, 2)]
