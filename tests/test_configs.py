"""Every YAML config in the repository (configs/ and the packaged synthmix/configs/) loads and
validates with the schema it is written for. A config of an unknown kind fails: register it here."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted([*ROOT.glob("configs/**/*.yaml"), *ROOT.glob("configs/**/*.yml"),
                  *ROOT.glob("src/synthmix/configs/*.yaml")])


def kind_of(data: dict) -> str:
    """Dispatch on top-level keys (each schema has a distinctive set)."""
    keys = set(data)
    if {"models", "setups"} <= keys:
        return "study"
    if {"generator", "out_dir", "manifest"} <= keys:
        return "generate"
    if "train" in keys and keys & {"folder", "manifest"}:
        return "train-run"
    if {"manifest", "out_dir", "resolution"} <= keys:
        return "embedded-generator-train"
    return "unknown"


def load(path: Path):
    from synthmix.core.config import load_config, load_yaml

    data = load_yaml(path)
    assert isinstance(data, dict), f"{path}: not a mapping"
    kind = kind_of(data)
    if kind == "study":
        from synthmix.experiments.load import load_study

        return kind, load_study(path)
    if kind == "generate":
        from synthmix.generation.jobs import load_generate_config

        return kind, load_generate_config(path)
    if kind == "train-run":
        from synthmix.training.train import TrainRunConfig

        return kind, load_config(TrainRunConfig, path)
    if kind == "embedded-generator-train":
        from synthmix.generation.embedded.config import TrainConfig

        return kind, load_config(TrainConfig, path)
    pytest.fail(f"{path}: unknown config kind (keys {sorted(data)}); add it to tests/test_configs.py")


def test_there_are_configs():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "demo-quick.yaml", "fruit-study.yaml", "thesis.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT)) for p in CONFIGS])
def test_config_loads(path):
    kind, cfg = load(path)
    assert cfg is not None and kind != "unknown"


def test_repo_demo_configs_are_the_packaged_ones():
    """`synthmix demo` runs the packaged copy; configs/demo*.yaml must say the same."""
    for name in ("demo.yaml", "demo-quick.yaml"):
        assert (ROOT / "configs" / name).read_text() == (ROOT / "src/synthmix/configs" / name).read_text()


def test_a_broken_study_config_names_file_and_field(tmp_path):
    from synthmix.core.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "src/synthmix/configs/demo-quick.yaml").read_text().replace(
        "training: {batch_size: 32", "training: {batch_size: -32"))
    with pytest.raises(ConfigError) as ei:
        load(bad)
    assert str(bad) in str(ei.value) and "training.batch_size" in str(ei.value)
