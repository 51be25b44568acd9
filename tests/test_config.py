"""The configuration is validated before any job starts, with useful messages."""

import copy

import pytest

from cinnflow.config import load_process, load_yaml, validate_config
from cinnflow.errors import ConfigError

SCHEMA = "workflow/schemas/config.schema.yaml"


@pytest.fixture
def config():
    return load_yaml("config/config.yaml")


@pytest.mark.parametrize(
    "path", ["config/config.yaml", "config/paper.yaml", "config/zjets.yaml"]
)
def test_shipped_configs_are_valid(path):
    config = validate_config(load_yaml(path), SCHEMA)
    process = load_process(config["process"])
    if config["events"]["source"] == "lhe":
        # The example's LHE file sits beside the repository (../shared/data/real).
        assert config["events"]["lhe_file"].endswith(".lhe.gz")
        assert process["matching"] == "mlm_madgraph" and config["events"]["isr"]


def test_unknown_key_names_the_path_and_suggests_the_nearest(config):
    config["training"]["learnig_rate"] = 1e-3
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert "training: unknown key 'learnig_rate'" in str(err.value)
    assert "did you mean 'learning_rate'?" in str(err.value)


def test_wrong_type_and_range_name_the_key_and_value(config):
    bad = copy.deepcopy(config)
    bad["events"]["n_events"] = "many"
    bad["model"]["n_blocks"] = 0
    with pytest.raises(ConfigError) as err:
        validate_config(bad, SCHEMA)
    text = str(err.value)
    assert "events.n_events: value 'many'" in text
    assert "model.n_blocks: value 0" in text


def test_split_fractions_must_add_up(config):
    config["preparation"]["split"] = {"train": 0.5, "val": 0.1, "test": 0.1}
    with pytest.raises(ConfigError, match="add up to 0.7"):
        validate_config(config, SCHEMA)


def test_lines_overlay_builds_the_model_it_describes():
    from cinnflow.flows import ConditionalINN

    config = load_yaml("config/config.yaml")
    overlay = load_yaml("config/lines.yaml")
    # An overlay: the rest is the main job's (the network and epochs of its
    # measurement are pinned).
    assert set(overlay) == {"model", "training"}
    assert set(overlay["training"]) == {"epochs"}
    config["model"].update(overlay["model"])
    config["training"].update(overlay["training"])
    config = validate_config(config, SCHEMA)
    names = [f"{o}_{f}" for o in ("q1", "q2", "l1", "l2") for f in ("pt", "eta", "phi")]
    detector = ["pt", "eta", "phi", "mass"] * 4
    model = ConditionalINN.from_config(
        config["model"], ["pt", "eta", "phi"] * 4, detector, 1, names
    )
    assert model.flow_kinds == ["other", "eta", "other", "mass", "other", "other"] + [
        "pt",
        "eta",
        "phi",
        "mass",
        "eta",
        "phi",
    ]
    assert model.column_transform.lines == {3: (80.385, 2.085), 9: (91.188, 2.495)}
