"""Review bugs of issue 13 below the experiments layer: settings accepted and then ignored or
silently replaced, and counts that can be zero. Each test failed on the code before its fix."""

from __future__ import annotations

import pytest

from synthmix.core.config import parse_config
from synthmix.core.errors import ConfigError

# ---------------------------------------------------------------- SD speed: classic attention + fused qkv


@pytest.mark.parametrize("cls_name", ["Text2ImgConfig", "DAFusionConfig"])
def test_classic_attention_with_fused_qkv_is_refused(cls_name):
    """fuse_qkv_projections() installs diffusers' fused SDPA processor, silently replacing the
    classic one: the combination must be a config error naming both fields."""
    from synthmix.generation.sd import config as sd_config

    data = {"model": "m", "speed": {"attention": "classic", "fuse_qkv": True}}
    with pytest.raises(ConfigError) as err:
        parse_config(getattr(sd_config, cls_name), data, source="generator")
    msg = str(err.value)
    assert "generator" in msg and "- speed" in msg
    assert "attention: classic" in msg and "fuse_qkv" in msg
    # each alone stays valid
    for speed in ({"attention": "classic"}, {"attention": "sdpa", "fuse_qkv": True}):
        parse_config(getattr(sd_config, cls_name), {"model": "m", "speed": speed}, source="generator")
