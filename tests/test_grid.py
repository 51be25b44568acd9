"""Hyperparameter grid (issue 6): points, their config, and the selection by loss."""

import csv
import json

import pytest

from cinnflow.config import load_yaml
from cinnflow.errors import ConfigError, InputFileError
from cinnflow.flows import MODEL_CONFIG_KEYS
from cinnflow.training import DEFAULT_TRAINING_CONFIG
from cinnflow.training.grid import (
    GRID_KEYS,
    grid_points,
    point_config,
    select_point,
    selected_paths,
    write_grid_metrics,
)

SCHEMA = "workflow/schemas/config.schema.yaml"


@pytest.fixture
def config():
    return load_yaml("tests/configs/tiny.yaml")


def _loss_csv(path, val_losses):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["epoch", "train_loss", "val_loss", "learning_rate"])
        for epoch, loss in enumerate(val_losses):
            writer.writerow([epoch, loss + 0.5, loss, 1e-3])
    return str(path)


def test_points_are_the_product_in_key_order_with_readable_names(config):
    config["ensemble"]["grid"] = {
        "learning_rate": [1.0e-3, 3.0e-4],
        "subnet_hidden": [[16], [32, 32]],
    }
    points = grid_points(config)
    assert list(points) == [
        "learning_rate=0.001_subnet_hidden=16",
        "learning_rate=0.001_subnet_hidden=32x32",
        "learning_rate=0.0003_subnet_hidden=16",
        "learning_rate=0.0003_subnet_hidden=32x32",
    ]
    settings = points["learning_rate=0.0003_subnet_hidden=32x32"]
    sections = point_config(config, settings)
    assert sections["training"]["learning_rate"] == 3.0e-4
    assert sections["model"]["subnet_hidden"] == [32, 32]
    # Everything else is the config's own, and the config itself is unchanged.
    assert sections["training"]["epochs"] == config["training"]["epochs"] == 2
    assert sections["model"]["n_blocks"] == config["model"]["n_blocks"]
    assert config["training"]["learning_rate"] == 1.0e-3


def test_pair_frames_and_symmetries_are_grid_keys_with_readable_names(config):
    frame = {"pair": ["q1", "q2"], "line": [80.385, 2.085], "recoil": ["l1", "l2"]}
    config["ensemble"]["grid"] = {
        "pair_frames": [[], [frame], [{**frame, "reference": True}]],
        "symmetries": [[], ["phi_rotation"]],
    }
    points = grid_points(config)
    assert list(points)[:2] == [
        "pair_frames=none_symmetries=none",
        "pair_frames=none_symmetries=phi_rotation",
    ]
    name = "pair_frames=q1xq2-recoil-l1xl2-line-ref_symmetries=phi_rotation"
    assert name in points
    sections = point_config(config, points[name])
    assert sections["model"]["pair_frames"][0]["reference"] is True
    assert sections["training"]["symmetries"] == ["phi_rotation"]


def test_no_grid_means_no_points(config):
    assert grid_points(config) == {}


def test_grid_keys_are_model_and_training_keys_and_in_the_schema():
    assert set(GRID_KEYS["model"]) == set(MODEL_CONFIG_KEYS)
    assert set(GRID_KEYS["training"]) < set(DEFAULT_TRAINING_CONFIG)
    schema = load_yaml(SCHEMA)["properties"]
    grid = schema["ensemble"]["properties"]["grid"]["properties"]
    assert set(grid) == set(GRID_KEYS["model"]) | set(GRID_KEYS["training"])
    for section, keys in GRID_KEYS.items():
        for key in keys:
            assert key in schema[section]["properties"], (section, key)


def test_grid_points_reject_bad_keys_and_values(config):
    config["ensemble"]["grid"] = {"n_draws": [10, 20]}
    with pytest.raises(ConfigError, match="unknown key 'n_draws'.*n_blocks"):
        grid_points(config)
    config["ensemble"]["grid"] = {"n_blocks": []}
    with pytest.raises(ConfigError, match=r"ensemble.grid.n_blocks = \[\]"):
        grid_points(config)
    config["ensemble"]["grid"] = {"n_blocks": [2, 2]}
    with pytest.raises(ConfigError, match="both named 'n_blocks=2'"):
        grid_points(config)


def test_selection_takes_the_lowest_mean_of_the_members_best_losses(tmp_path):
    points = {
        "learning_rate=0.001": {"learning_rate": 1.0e-3},
        "learning_rate=0.0003": {"learning_rate": 3.0e-4},
        "learning_rate=0.0001": {"learning_rate": 1.0e-4},
    }
    root = tmp_path / "results/training"
    losses = {
        # The single lowest member loss (1.0), but a poor second member: mean 3.0.
        "learning_rate=0.001": [[4.0, 1.0, 2.0], [5.0, 5.0]],
        # Best epochs 2 and 0: mean (2.0 + 2.2) / 2 = 2.1, the winner.
        "learning_rate=0.0003": [[3.0, 2.5, 2.0, 2.4], [2.2, 2.3]],
        "learning_rate=0.0001": [[2.6], [2.7, 2.65]],
    }
    loss_csvs = {
        point: [
            _loss_csv(root / point / f"loss_{m}.csv", values)
            for m, values in enumerate(members)
        ]
        for point, members in losses.items()
    }
    selection = select_point(points, loss_csvs)
    assert selection["best_point"] == "learning_rate=0.0003"
    assert selection["best_val_loss"] == pytest.approx(2.1, abs=1e-12)
    record = selection["points"]["learning_rate=0.0003"]
    assert record["settings"] == {"learning_rate": 3.0e-4}
    assert record["members"]["0"] == {
        "best_val_loss": 2.0,
        "best_epoch": 2,
        "epochs": 4,
    }
    assert record["members"]["1"]["best_epoch"] == 0
    assert selection["points"]["learning_rate=0.001"]["val_loss"] == 3.0
    assert selection["points"]["learning_rate=0.0001"]["val_loss"] == pytest.approx(
        (2.6 + 2.65) / 2, abs=1e-12
    )

    grid_json = tmp_path / "results/metrics/grid.json"
    write_grid_metrics(grid_json, selection)
    assert json.loads(grid_json.read_text()) == selection
    models = [f"results/models/{p}/{m}" for p in points for m in (0, 1)]
    assert selected_paths(grid_json, models) == [
        "results/models/learning_rate=0.0003/0",
        "results/models/learning_rate=0.0003/1",
    ]
    with pytest.raises(InputFileError, match="matches none of the paths"):
        selected_paths(grid_json, ["results/models/0"])


def test_selection_rejects_unreadable_loss_files(tmp_path):
    points = {"n_blocks=2": {"n_blocks": 2}}
    bad = tmp_path / "loss_0.csv"
    bad.write_text("epoch,train_loss\n0,1.5\n")
    with pytest.raises(InputFileError, match=r"loss_0.csv: expected .* val_loss"):
        select_point(points, {"n_blocks=2": [str(bad)]})
    with pytest.raises(InputFileError, match="cannot read"):
        select_point(points, {"n_blocks=2": [str(tmp_path / "missing.csv")]})
    bad.write_text("epoch,train_loss,val_loss\n0,1.5,nan\n")
    with pytest.raises(InputFileError, match="not all finite"):
        select_point(points, {"n_blocks=2": [str(bad)]})
    with pytest.raises(ConfigError, match="has no loss CSV"):
        select_point(points, {})
