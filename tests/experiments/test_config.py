"""Study config validation: every mistake is an error naming its field, before any work starts."""

from __future__ import annotations

import pytest
from study_helpers import study_dict, tiny_dataset, write_study

from synthmix.core.errors import ConfigError
from synthmix.experiments.load import load_study, parse_study


@pytest.fixture
def data(tmp_path):
    return tiny_dataset(tmp_path / "data", per_class=2, test_per_class=1)


def error_of(data_dict) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_study(data_dict)
    return str(ei.value)


def test_valid_study_loads_with_relative_dataset_path(tmp_path, data):
    d = study_dict(data)
    d["dataset"]["path"] = "data"  # relative to the YAML file
    cfg = load_study(write_study(tmp_path / "s.yaml", d))
    assert cfg.dataset.path == str(data.resolve())
    assert cfg.reference_setup == "real"


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(bogus=1), "bogus"),
    (lambda d: d["training"].update(epochs=0), "epochs"),
    (lambda d: d["training"].update(optimiser="sgd"), "optimiser"),
    (lambda d: d["models"][0].update(name="nope"), "models.0.name"),
    (lambda d: d["setups"].append({"name": "x", "generator": "missing", "mix": {"kind": "per_real", "k": 1}}),
     "setups.1.generator"),
    (lambda d: d["setups"].append({"name": "real"}), "names repeat"),
    (lambda d: d["setups"].append({"name": "y", "mix": {"kind": "ratio", "real_fraction": 0.5}}),
     "names no generator"),
    (lambda d: d["setups"][0].update(mix={"kind": "real_only", "k": 2}), "setups.0.mix"),
    # misspelt or invalid NESTED fields are named too (typed sections, no re-validation later)
    (lambda d: d["setups"][0].update(training={"lrr": 0.1}), "setups.0.training.lrr"),
    (lambda d: d["setups"][0].update(training={"augment": {"hflp": 0.5}}), "setups.0.training.augment.hflp"),
    (lambda d: d.update(contrastive={"temprature": 0.1}), "contrastive.temprature"),
    (lambda d: d.update(budget={"mode": "flops"}), "budget.mode"),
    (lambda d: d.update(controls={"real_fractions": [0.5, 1.5]}), "controls.real_fractions"),
    (lambda d: d["curation"].update(settings={"sort": {"conf_percentil": 5}}), "curation.settings"),
    (lambda d: d["setups"].append({"name": "real+aug1", "generator": "g", "mix": {"kind": "per_real", "k": 1}})
     or d.update(generators={"g": {"type": "embedded", "train": {"steps": 1}}}), "names of automatic controls"),
    (lambda d: d["setups"][0].update(training={"epochs": 3}), "setups.0.training: ['epochs']"),
    (lambda d: d["setups"].append({"name": "g", "generator": "g"})
     or d.update(generators={"g": {"type": "embedded", "train": {"steps": 1}}}), "silently equal"),
    (lambda d: d.update(seeds=[1, 1]), "seeds"),
    (lambda d: d.update(reference="nope"), "reference"),
    (lambda d: d["dataset"].update(path="/does/not/exist"), "dataset.path"),
    (lambda d: d["evaluation"].update(primary_detector="knn", detectors=["msp"]), "primary_detector"),
    (lambda d: d["preprocessing"].update(image_size=3), "image_size"),
])
def test_bad_values_name_the_field(data, mutate, field):
    d = study_dict(data)
    mutate(d)
    assert field in error_of(d)


def test_near_ood_negatives_need_supcon(data):
    d = study_dict(data, generators={"embedded": {"type": "embedded", "train": {"steps": 1}}})
    d["setups"].append({"name": "neg", "generator": "embedded", "near_ood_negatives": True,
                        "mix": {"kind": "per_real", "k": 1}})
    assert "near_ood_negatives needs loss: supcon" in error_of(d)
    d["setups"][-1]["loss"] = "supcon"
    assert "leave mix and schedule" in error_of(d)
    d["setups"][-1]["mix"] = {}
    parse_study(d)


def test_generator_settings_are_validated_by_the_backend(data):
    d = study_dict(data, generators={"embedded": {"type": "embedded", "train": {"steps": 1},
                                                  "generate": {"in_dist_strengths": [1.5]}}})
    d["setups"].append({"name": "syn", "generator": "embedded", "mix": {"kind": "per_real", "k": 1}})
    msg = error_of(d)
    assert "generators.embedded.generate" in msg and "strength" in msg
    d["generators"]["embedded"]["generate"] = {}
    d["generators"]["embedded"]["train"] = {"resolution": 2}
    assert "generators.embedded.train" in error_of(d)
    d["generators"]["embedded"] = {"type": "nosuch"}
    assert "unknown generator 'nosuch'" in error_of(d)


def test_curation_needs_a_validation_split(data):
    d = study_dict(data, generators={"embedded": {"type": "embedded", "train": {"steps": 1}}})
    d["setups"].append({"name": "syn", "generator": "embedded", "mix": {"kind": "per_real", "k": 1}})
    d["curation"] = {"enabled": True}
    d["dataset"]["val_fraction"] = 0.0
    assert "dataset.val_fraction" in error_of(d)
    d["dataset"]["val_fraction"] = 0.2
    d["curation"]["classifier_setup"] = "syn"
    assert "curation.classifier_setup" in error_of(d)


def test_interp_with_one_generator_class_fails_before_any_work(tmp_path):
    from conftest import make_imagefolder

    data = make_imagefolder(tmp_path / "one", per_class={"apple": 3, "mixed": 2}, test_per_class=1)
    d = study_dict(data, generators={"g": {"type": "embedded", "train": {"steps": 1},
                                           "generate": {"interp_per_class": 2}}})
    d["setups"].append({"name": "syn", "generator": "g", "mix": {"kind": "per_real", "k": 1}})
    assert "generators.g.generate.interp_per_class" in error_of(d)


def test_timm_backbones_are_study_models(data):
    d = study_dict(data)
    d["models"] = [{"name": "timm:resnet10t", "args": {"weights": None}}]
    cfg = parse_study(d)
    assert cfg.models[0].name == "timm:resnet10t"
    d["models"] = [{"name": "timm:no_such_net"}]
    assert "models.0.name: timm has no architecture 'no_such_net'" in error_of(d)
