"""Catalogue of bad inputs (issue 7): each is rejected with a message that names the
file, branch or key, the value seen and what was expected, and leaves no output,
partial output or temporary file behind.

Every case calls the stage function that would write the outputs (``prepare``,
``simulate``, ``train``, ``run_calibration``, ``ConditionalINN.save``) with its outputs
in an empty folder, or the loader that such a stage calls first, and checks that the
folder is still empty afterwards. Two cases run the real entry point, ``snakemake``.
"""

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from conftest import REAL_DATA as REAL
from test_delphes_io import _random_collections
from test_training import CFG, _model, _toy

from cinnflow.calibration.run import run_calibration
from cinnflow.config import load_process, load_yaml, validate_config
from cinnflow.errors import ConfigError, InputFileError, TrainingError
from cinnflow.events.generate import simulate
from cinnflow.flows import ConditionalINN
from cinnflow.io.delphes import SCHEMA as DELPHES_SCHEMA
from cinnflow.io.delphes import DelphesWriter
from cinnflow.preparation.prepare import SPLITS, load_arrays, prepare
from cinnflow.training.trainer import train

SCHEMA = "workflow/schemas/config.schema.yaml"
TINY = "tests/configs/tiny.yaml"
ZW = load_process("config/processes/zw.yaml")
CARD = load_yaml("config/detector/atlas.yaml")
JETS = {"radius": 0.6, "pt_min_gev": 25.0, "eta_max": 2.5}
SPLIT = {"train": 0.6, "val": 0.2, "test": 0.2}
ROOT_DIR = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="real input files absent")


def _left_behind(folder):
    """Every file or folder under ``folder`` (temporary ``.*.tmp*`` names included)."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def rejected(call, error, *fragments, out):
    """Run ``call``; it must raise ``error`` naming every fragment, ``out`` empty."""
    with pytest.raises(error) as info:
        call()
    text = str(info.value)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} missing from the message {text!r}"
    assert _left_behind(out) == [], f"output left behind after: {text}"
    return text


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture
def inp(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------- configuration


@pytest.fixture
def config():
    return load_yaml(TINY)


def _set(config, dotted, value):
    *parents, key = dotted.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    if value is _DELETE:
        del node[key]
    else:
        node[key] = value


_DELETE = object()

CONFIG_CASES = {
    "unknown top-level key": ("sed", 1, ["<top level>: unknown key 'sed'", "'seed'"]),
    "unknown nested key": (
        "sampling.n_draw",
        5,
        ["sampling: unknown key 'n_draw'", "did you mean 'n_draws'?"],
    ),
    "wrong type boolean": (
        "events.isr",
        "yes",
        ["events.isr: value 'yes'", "not of type 'boolean'"],
    ),
    "wrong type integer": (
        "training.batch_size",
        64.5,
        ["training.batch_size: value 64.5", "not of type 'integer'"],
    ),
    "out of range jet radius": (
        "events.jets.radius",
        3.0,
        ["events.jets.radius: value 3.0", "maximum of 2.0"],
    ),
    "out of range clamp": (
        "model.clamp",
        -1.0,
        ["model.clamp: value -1.0", "less than or equal to the minimum of 0"],
    ),
    "not in enum": (
        "events.source",
        "herwig",
        ["events.source: value 'herwig'", "'pythia', 'lhe'"],
    ),
    "missing required key": (
        "training.epochs",
        _DELETE,
        ["training: value", "'epochs' is a required property"],
    ),
    "split does not add up": (
        "preparation.split",
        {"train": 0.6, "val": 0.3, "test": 0.3},
        ["preparation.split fractions", "add up to 1.2, expected 1"],
    ),
    "split fraction zero": (
        "preparation.split.val",
        0,
        ["preparation.split.val: value 0", "less than or equal to the minimum of 0"],
    ),
    "lhe source without file": (
        "events.source",
        "lhe",
        ["events.source is 'lhe' but events.lhe_file is None", "path of an LHE"],
    ),
    "unknown grid key": (
        "ensemble.grid",
        {"learning_rat": [1.0e-3, 3.0e-4]},
        ["ensemble.grid: unknown key 'learning_rat'", "did you mean 'learning_rate'?"],
    ),
    "grid key outside model and training": (
        "ensemble.grid",
        {"n_draws": [10, 20]},
        ["ensemble.grid: unknown key 'n_draws'", "n_blocks"],
    ),
    "empty grid list": (
        "ensemble.grid",
        {"learning_rate": []},
        ["ensemble.grid.learning_rate: value []", "should be non-empty"],
    ),
    "grid value not a list": (
        "ensemble.grid",
        {"n_blocks": 12},
        ["ensemble.grid.n_blocks: value 12", "not of type 'array'"],
    ),
    "grid value out of range": (
        "ensemble.grid",
        {"learning_rate": [1.0e-3, -1.0]},
        ["ensemble.grid.learning_rate.1: value -1.0", "minimum of 0"],
    ),
    "repeated grid value": (
        "ensemble.grid",
        {"n_blocks": [10, 10]},
        ["ensemble.grid.n_blocks: value [10, 10]", "non-unique"],
    ),
    "empty grid": (
        "ensemble.grid",
        {},
        ["ensemble.grid: value {}", "should be non-empty"],
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_value(case, config, out):
    key, value, fragments = CONFIG_CASES[case]
    _set(config, key, value)
    rejected(
        lambda: validate_config(config, SCHEMA, source=TINY),
        ConfigError,
        TINY,
        *fragments,
        out=out,
    )


def test_lhe_file_that_does_not_exist(config, tmp_path, out):
    # Caught when the workflow is parsed: Snakemake would otherwise run on with the
    # Pythia chunks of an earlier run and record the LHE file in the provenance.
    missing = tmp_path / "ttbar.lhe.gz"
    _set(config, "events.source", "lhe")
    _set(config, "events.lhe_file", str(missing))
    rejected(
        lambda: validate_config(config, SCHEMA, source=TINY),
        ConfigError,
        TINY,
        f"events.lhe_file {str(missing)!r} does not exist",
        "expected the path of an LHE file",
        out=out,
    )


def test_pair_masses_of_unknown_objects(out):
    from cinnflow.config import check_pair_masses

    rejected(
        lambda: check_pair_masses([["q1", "j7"]], ZW),
        ConfigError,
        "model.pair_masses entry ['q1', 'j7']",
        "['j7'] are not parton objects of the process 'zw'",
        "['q1', 'q2', 'l1', 'l2']",
        out=out,
    )


@pytest.mark.parametrize(
    ("pairs", "ordered", "fragments"),
    [
        (
            [["q1", "q1"]],
            None,
            ["model.pair_masses entry ['q1', 'q1'] pairs an object with itself"],
        ),
        (
            [["l1", "l2"]],
            [["q1", "q2"]],
            [
                "model.pair_masses_ordered entries [['q1', 'q2']]",
                "are not in model.pair_masses = [['l1', 'l2']]",
            ],
        ),
    ],
)
def test_pair_mass_options_that_do_not_fit(pairs, ordered, fragments, out):
    # Checked when the workflow is parsed (a fresh user met both in the train job).
    from cinnflow.config import check_pair_masses

    rejected(
        lambda: check_pair_masses(pairs, ZW, ordered=ordered),
        ConfigError,
        *fragments,
        out=out,
    )


@pytest.mark.parametrize(
    ("frames", "pairs", "fragments"),
    [
        (
            [{"pair": ["q1", "w"]}],
            None,
            [
                "model.pair_frames[0].pair entry ['q1', 'w']",
                "['w'] are not parton objects of the process 'zw'",
            ],
        ),
        (
            [{"pair": ["q1", "q2"]}],
            [["q1", "q2"]],
            ["model.pair_masses = [['q1', 'q2']] use ['q1', 'q2'] more than once"],
        ),
        (
            [{"pair": ["q1", "q2"], "recoil": ["q2", "l1"]}],
            None,
            ["recoil objects ['q2', 'l1'] must be distinct parton objects outside"],
        ),
        (
            [{"pair": ["q1", "q2"], "anchor": True, "reference": True}],
            None,
            ["model.pair_frames[0] = ", "sets reference and anchor", "at most one of"],
        ),
        (
            [{"pair": ["q1", "q2"], "directions": True, "align": True}],
            None,
            ["model.pair_frames[0] = ", "sets align without recoil objects"],
        ),
    ],
)
def test_pair_frames_that_do_not_fit(frames, pairs, fragments, out):
    # Checked when the workflow is parsed, before any event is simulated.
    from cinnflow.config import check_pair_frames

    rejected(
        lambda: check_pair_frames(frames, ZW, pair_masses=pairs),
        ConfigError,
        *fragments,
        out=out,
    )


def test_balance_bound_without_the_support_truncation(out):
    # Checked when the workflow is parsed; the sampler refuses it as well.
    from cinnflow.config import check_sampling

    rejected(
        lambda: check_sampling({"support_margin": None, "balance_quantile": 0.999}),
        ConfigError,
        "sampling.balance_quantile = 0.999 with sampling.support_margin = null",
        "expected a support_margin >= 0",
        out=out,
    )


def test_missing_process_file(out):
    rejected(
        lambda: load_process("config/processes/zz.yaml"),
        ConfigError,
        "config/processes/zz.yaml: no such file",
        out=out,
    )


def test_process_file_without_detector_block(inp, out):
    path = inp / "zw.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in ZW.items() if k != "detector"}))
    rejected(
        lambda: load_process(path),
        ConfigError,
        str(path),
        "lacks the key 'detector'",
        out=out,
    )


def test_config_file_not_yaml(inp, out):
    path = inp / "config.yaml"
    path.write_text("seed: [7,\n")
    rejected(lambda: load_yaml(path), ConfigError, str(path), "not valid YAML", out=out)


@pytest.mark.parametrize(
    ("cfg", "fragments"),
    [
        ({"epoch": 3}, ["training: unknown key 'epoch'", "did you mean 'epochs'?"]),
        ({"lr_decay": 0.0}, ["training.lr_decay = 0.0", "expected a number in (0, 1]"]),
        ({"batch_size": "64"}, ["training.batch_size = '64'", "not a number"]),
    ],
    ids=["unknown key", "out of range", "wrong type"],
)
def test_bad_training_config(cfg, fragments, out):
    model = _model()
    data = _toy(128, seed=1)
    rejected(
        lambda: train(
            model,
            data,
            data,
            cfg=cfg,
            checkpoint_dir=out / "checkpoints",
            seed=1,
            loss_csv=out / "loss.csv",
        ),
        ConfigError,
        *fragments,
        out=out,
    )


# ---------------------------------------------------------------- event files


def _prepare(inputs, out, fractions=SPLIT):
    return lambda: prepare(
        [str(p) for p in inputs],
        ZW,
        fractions=fractions,
        seed=1,
        outputs={name: out / f"{name}.npz" for name in SPLITS},
        provenance_path=out / "provenance.json",
        config={},
    )


def _write_root(path, collections, tree="Delphes"):
    with DelphesWriter(path, tree=tree) as writer:
        writer.write(collections)
    return path


def _no_mothers(collections):
    particles = collections["Particle"]
    collections["Particle"] = ak.with_field(particles, particles.M1 * 0 - 1, "M1")
    return collections


@pytest.fixture
def random_root(inp):
    """Delphes-schema events of random content, no mothers (no ZW event passes)."""
    data = _no_mothers(_random_collections(seed=2, n_events=40))
    return _write_root(inp / "random.root", data)


def _with_value(collections, name, field, index, value):
    records = collections[name]
    flat = ak.to_numpy(ak.flatten(records[field])).copy()
    flat[index] = value
    collections[name] = ak.with_field(
        records, ak.unflatten(flat, ak.num(records)), field
    )
    return collections


def test_event_file_missing(inp, out):
    path = inp / "nope.root"
    rejected(
        _prepare([path], out), InputFileError, str(path), "does not exist", out=out
    )


def test_event_file_empty(inp, out):
    path = inp / "empty.root"
    path.touch()
    rejected(
        _prepare([path], out),
        InputFileError,
        str(path),
        "not a ROOT file: starts with b''",
        "expected the magic bytes b'root'",
        out=out,
    )


def test_event_file_not_root(inp, out):
    path = inp / "events.root"
    path.write_text("run,event\n1,2\n")
    rejected(
        _prepare([path], out),
        InputFileError,
        str(path),
        "starts with b'run,'",
        out=out,
    )


def test_event_file_is_a_directory(inp, out):
    path = inp / "events.root"
    path.mkdir()
    rejected(
        _prepare([path], out), InputFileError, str(path), "not a regular file", out=out
    )


def test_event_file_is_lhe(inp, out):
    path = inp / "events.lhe"
    path.write_text('<LesHouchesEvents version="3.0">\n')
    rejected(
        _prepare([path], out),
        InputFileError,
        str(path),
        "not a ROOT file: starts with b'<Les'",
        out=out,
    )


def test_event_file_truncated(random_root, inp, out):
    cut = inp / "cut.root"
    raw = random_root.read_bytes()
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    rejected(
        _prepare([cut], out),
        InputFileError,
        str(cut),
        f"truncated: {len(raw) * 2 // 3} bytes on disk",
        f"ends at byte {len(raw)}",
        out=out,
    )


def test_event_file_without_delphes_tree(inp, out):
    path = _write_root(inp / "t.root", _random_collections(3, 5), tree="Events")
    rejected(
        _prepare([path], out),
        InputFileError,
        str(path),
        "has no tree 'Delphes'; trees there: ['Events']",
        out=out,
    )


def test_event_file_without_particle_collection(inp, out):
    data = _random_collections(seed=3, n_events=5)
    del data["Particle"]
    path = _write_root(inp / "reco_only.root", data)
    rejected(
        _prepare([path], out),
        InputFileError,
        str(path),
        "no collection 'Particle' (branch Particle.*)",
        out=out,
    )


def _write_without_jet_mass(path):
    """A Delphes tree with Particle and Jet, the Jet.Mass branch left out."""
    data = _random_collections(seed=3, n_events=5)
    data["Jet"] = ak.zip({f: data["Jet"][f] for f in ("PT", "Eta", "Phi")})
    with uproot.recreate(path) as handle:
        handle.mktree(
            "Delphes",
            {name: data[name].type.content for name in ("Particle", "Jet")},
            counter_name=lambda c: f"{c}_size",
            field_name=lambda c, f: f"{c}.{f}",
        )
        handle["Delphes"].extend({name: data[name] for name in ("Particle", "Jet")})
    return path


def test_event_file_without_jet_mass_branch(inp, out):
    path = _write_without_jet_mass(inp / "no_mass.root")
    rejected(
        _prepare([path], out),
        InputFileError,
        str(path),
        "no branch Jet.Mass",
        "nearest fields of Jet",
        out=out,
    )


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [("Jet", "PT", np.nan), ("Particle", "Eta", np.inf)],
    ids=["nan", "inf"],
)
def test_event_file_non_finite_values(name, field, value, inp, out):
    data = _with_value(_random_collections(seed=4, n_events=20), name, field, 3, value)
    path = _write_root(inp / "bad_values.root", data)
    # The event (0-based entry) that holds the 4th value of the collection.
    event = int(np.searchsorted(np.cumsum(ak.num(data[name])), 3, side="right"))
    rejected(
        _prepare([path], out),
        InputFileError,
        str(path),
        f"branch {name}.{field}",
        f"1 non-finite values (first: {value!r} in event {event})",
        "expected finite numbers",
        out=out,
    )


def test_mother_index_outside_the_event(inp, out):
    data = _random_collections(seed=2, n_events=10)
    path = _write_root(inp / "m1.root", data)
    mothers = data["Particle"].M1.tolist()
    bad = [m for event in mothers for m in event if not -1 <= m < len(event)]
    first = next(m for m in mothers[0] if not -1 <= m < len(mothers[0]))
    rejected(
        _prepare([path], out),
        InputFileError,
        f"branch Particle.M1 of {str(path)!r} holds {len(bad)} mother indices",
        f"outside their event (first: {first} in event 0 of {len(mothers[0])} ",
        "expected -1 or an index in [0, number of particles)",
        out=out,
    )


def test_zero_events_after_selection(random_root, out):
    rejected(
        _prepare([random_root], out),
        InputFileError,
        str(random_root),
        "0 events pass the selection of process 'zw'",
        "expected at least 3",
        "'parton_level_found': 0",
        out=out,
    )


@needs_real
def test_real_file_with_fewer_events_than_splits(out):
    path = REAL / "delphes_pp_Zh_inclusive_100ev.root"
    rejected(
        _prepare([path], out),
        InputFileError,
        str(path),
        "1 events pass the selection",
        "expected at least 3 to fill the train/val/test splits",
        out=out,
    )


def _zw_like_events(n_events):
    """``n_events`` copies of one event that passes the ZW selection."""
    from test_preparation import PYTHIA8_EVENT

    def jagged(rows, fields):
        columns = {f: [[row.get(f, 0) for row in rows]] * n_events for f in fields}
        return ak.zip({f: ak.Array(v) for f, v in columns.items()})

    names = ("PID", "Status", "M1", "PT", "Eta", "Phi", "Mass")
    particles = [dict(zip(names, row, strict=True)) for row in PYTHIA8_EVENT]
    jets = [{"PT": 52.0, "Eta": -0.4, "Phi": -2.5}, {"PT": 14.0, "Eta": 1.1}]
    muons = [{"PT": 47.0, "Phi": 0.4, "Charge": -1}, {"PT": 9.0, "Charge": 1}]
    return {
        "Event": jagged([{"Number": 1}], DELPHES_SCHEMA["Event"]),
        "Particle": jagged(particles, DELPHES_SCHEMA["Particle"]),
        "Jet": jagged(jets, DELPHES_SCHEMA["Jet"]),
        "Muon": jagged(muons, DELPHES_SCHEMA["Muon"]),
        "Electron": jagged([], DELPHES_SCHEMA["Electron"]),
    }


def test_split_that_would_be_empty_writes_no_split(inp, out):
    path = _write_root(inp / "five.root", _zw_like_events(5))
    fractions = {"train": 0.9, "val": 0.05, "test": 0.05}
    rejected(
        _prepare([path], out, fractions),
        InputFileError,
        str(path),
        "split 'test' would be empty: 5 selected events with preparation.split",
        "expected at least one event per split",
        out=out,
    )
    # The same file with a split it can fill is accepted.
    assert prepare(
        [path],
        ZW,
        fractions=SPLIT,
        seed=1,
        outputs={name: out / f"{name}.npz" for name in SPLITS},
        provenance_path=out / "provenance.json",
        config={},
    ) == {"train": 3, "val": 1, "test": 1}


def test_good_file_then_bad_file_leaves_nothing(random_root, inp, out):
    bad = inp / "second.root"
    bad.write_bytes(b"root" + bytes(10))
    rejected(
        _prepare([random_root, bad], out),
        InputFileError,
        str(bad),
        "header incomplete",
        out=out,
    )


# ---------------------------------------------------------------- LHE files


def _simulate_lhe(path, out):
    return lambda: simulate(
        output=out / "chunk_0.root",
        n_events=10,
        seed=1,
        settings=[],
        detector_card=CARD,
        jets=JETS,
        lhe_file=path,
    )


_LHE_EVENT = [
    "<event>",
    " 1 1 1.0 91.0 0.0078 0.118",
    " 23 1 0 0 0 0 0 0 1 91 91 0 9",
    "</event>",
]


def _lhe(path, *body, head=('<LesHouchesEvents version="3.0">', "<init>", "</init>")):
    path.write_text("\n".join([*head, *body, "</LesHouchesEvents>"]) + "\n")
    return path


LHE_CASES = {
    "missing": (None, ["does not exist; expected a Les Houches file"]),
    "empty": ("", ["is not an LHE file: no '<LesHouchesEvents' tag"]),
    "no init": (
        dict(head=('<LesHouchesEvents version="3.0">',)),
        ["has no <init> block"],
    ),
    "no events": ((), ["holds no <event> blocks; expected at least one"]),
    "short particle line": (
        (*_LHE_EVENT[:2], " 23 1 0 0 0 0 0 0 1 91 91 0", "</event>"),
        ["event 0 (line 6): expected 13 numbers per particle line"],
    ),
    "fractional NUP": (
        ("<event>", " 1.5 1 1.0 91.0 0.0078 0.118", *_LHE_EVENT[2:]),
        ["event 0 (line 5): NUP must be a positive integer, got 1.5"],
    ),
    "event not closed": (
        (*_LHE_EVENT[:3], *_LHE_EVENT),
        ["event 0 (line 7): event block not closed with </event>"],
    ),
}


@pytest.mark.parametrize("case", list(LHE_CASES))
def test_bad_lhe_file(case, inp, out):
    spec, fragments = LHE_CASES[case]
    path = inp / "events.lhe"
    if spec == "":
        path.touch()
    elif isinstance(spec, dict):
        _lhe(path, *_LHE_EVENT, **spec)
    elif spec is not None:
        _lhe(path, *spec)
    rejected(_simulate_lhe(path, out), InputFileError, str(path), *fragments, out=out)


@needs_real
def test_truncated_plain_lhe(inp, out):
    raw = (REAL / "lhe_pp_VV_weakbosons_pythia8_100ev.lhe").read_text().splitlines()
    cut = next(i for i, line in enumerate(raw) if line.strip() == "</event>") + 3
    path = inp / "cut.lhe"
    path.write_text("\n".join(raw[:cut]) + "\n")
    rejected(
        _simulate_lhe(path, out),
        InputFileError,
        str(path),
        "event 1",
        "file ends inside an event block",
        out=out,
    )


@needs_real
def test_truncated_gzip_lhe(inp, out):
    raw = (REAL / "lhe_pp_ZZ_jjvv_mg5_100ev.lhe.gz").read_bytes()
    path = inp / "cut.lhe.gz"
    path.write_bytes(raw[: len(raw) // 2])
    rejected(
        _simulate_lhe(path, out),
        InputFileError,
        f"cannot read LHE file {str(path)!r}: EOFError",
        "truncated or its gzip stream corrupt",
        out=out,
    )


def test_corrupt_gzip_lhe(inp, out):
    text = "\n".join(['<LesHouchesEvents version="3.0">', "<init>", "</init>"])
    raw = bytearray(gzip.compress((text + "\n" + "\n".join(_LHE_EVENT) * 50).encode()))
    raw[20:40] = bytes(20)  # zeros in the middle of the deflate stream
    path = inp / "bad.lhe.gz"
    path.write_bytes(bytes(raw))
    rejected(
        _simulate_lhe(path, out),
        InputFileError,
        f"cannot read LHE file {str(path)!r}",
        "gzip stream corrupt",
        out=out,
    )


def test_lhe_path_with_a_blank(inp, out):
    path = _lhe(inp / "my events.lhe", *_LHE_EVENT)
    rejected(
        _simulate_lhe(path, out),
        ConfigError,
        f"events.lhe_file {str(path)!r} contains a blank",
        "expected a path without blanks",
        out=out,
    )


# ---------------------------------------------------------------- arrays, models


@pytest.fixture
def prepared(inp):
    x, c = _toy(20, seed=1)
    arrays = dict(
        x_parton=x,
        c_detector=c,
        parton_names=np.array(["a", "b"]),
        parton_kinds=np.array(["other", "other"]),
    )
    return inp / "train.npz", arrays


def test_prepared_file_missing(inp, out):
    path = inp / "train.npz"
    rejected(
        lambda: load_arrays(path),
        InputFileError,
        f"array file {str(path)!r} does not exist",
        out=out,
    )


def test_prepared_file_missing_a_key(prepared, out):
    path, arrays = prepared
    del arrays["c_detector"]
    np.savez(path, **arrays)
    rejected(
        lambda: load_arrays(path),
        InputFileError,
        str(path),
        "lacks the key 'c_detector'",
        "found ['parton_kinds', 'parton_names', 'x_parton']",
        out=out,
    )


def test_prepared_file_with_pickled_object_array(prepared, out):
    path, arrays = prepared
    arrays["parton_names"] = np.array([{"exec": "payload"}, "b"], dtype=object)
    np.savez(path, **arrays)
    rejected(
        lambda: load_arrays(path),
        InputFileError,
        str(path),
        "holds a pickled object array",
        "cinnflow never unpickles",
        out=out,
    )


def test_prepared_file_truncated(prepared, out):
    path, arrays = prepared
    np.savez(path, **arrays)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    rejected(
        lambda: load_arrays(path),
        InputFileError,
        f"cannot read array file {str(path)!r}: BadZipFile",
        "truncated or corrupt",
        out=out,
    )


def _posterior(path, **changes):
    x, _ = _toy(30, seed=1)
    arrays = dict(
        x_parton=x,
        draws=np.repeat(x[:, None, :], 10, axis=1),
        parton_names=np.array(["a", "b"]),
        parton_kinds=np.array(["other", "other"]),
    )
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _calibrate(path, out):
    return lambda: run_calibration(
        path,
        metrics_path=out / "calibration.json",
        curves_csv=out / "curves.csv",
        plots_dir=out / "plots",
        n_levels=11,
    )


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"draws": None}, ["lacks the key 'draws'"]),
        (
            {"draws": np.zeros((30, 10, 3), np.float32)},
            ["'draws' has shape (30, 10, 3), expected (30, n_draws, 2)"],
        ),
        (
            {"x_parton": np.zeros((30, 3), np.float32)},
            ["'x_parton' has shape (30, 3), expected (n_events, 2)"],
        ),
        ({"draws": np.full((30, 10, 2), np.nan)}, ["every event has NaN or infinite"]),
        (
            {"parton_names": np.array([b"a", None], dtype=object)},
            ["holds a pickled object array"],
        ),
    ],
    ids=["missing key", "draws shape", "truth shape", "all nan", "pickled"],
)
def test_bad_posterior_file(changes, fragments, inp, out):
    path = _posterior(inp / "test.npz", **changes)
    rejected(
        _calibrate(path, out),
        InputFileError,
        "posterior file",
        str(path),
        *fragments,
        out=out,
    )


@pytest.fixture
def saved_model(inp):
    model = _model()
    model.adapt(*_toy(200, seed=3))
    model.save(inp / "model")
    return inp / "model"


def test_model_dir_missing(inp, out):
    path = inp / "model"
    rejected(
        lambda: ConditionalINN.load(path),
        InputFileError,
        f"model directory {str(path)!r} has no config.json",
        out=out,
    )


def test_model_config_not_json(saved_model, out):
    (saved_model / "config.json").write_text('{"format_version": 1,')
    rejected(
        lambda: ConditionalINN.load(saved_model),
        InputFileError,
        str(saved_model / "config.json"),
        "is not valid JSON",
        out=out,
    )


def test_model_weights_corrupt(saved_model, out):
    for data in saved_model.glob("weights.data-*"):
        data.write_bytes(data.read_bytes()[:50])
    rejected(
        lambda: ConditionalINN.load(saved_model),
        InputFileError,
        f"cannot read the weights checkpoint {str(saved_model / 'weights')!r}",
        out=out,
    )


def test_model_weights_of_another_architecture(inp, out):
    model = _model(n_blocks=3)
    model.adapt(*_toy(200, seed=3))
    model.save(inp / "model")
    config = (inp / "model" / "config.json").read_text()
    (inp / "model" / "config.json").write_text(
        config.replace('"n_blocks": 3', '"n_blocks": 2')
    )
    rejected(
        lambda: ConditionalINN.load(inp / "model"),
        InputFileError,
        "cannot read the weights checkpoint",
        out=out,
    )


def test_corrupt_training_checkpoint_is_not_resumed(inp, out):
    data, val = _toy(256, seed=1), _toy(64, seed=2)
    model = _model()
    model.adapt(*data)
    ckpt = inp / "checkpoints"
    train(
        model,
        data,
        val,
        cfg={**CFG, "epochs": 1},
        checkpoint_dir=ckpt,
        seed=1,
        loss_csv=inp / "loss.csv",
    )
    for part in ckpt.glob("ckpt-*.data-*"):
        part.write_bytes(b"\0" * 64)
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    rejected(
        lambda: train(
            _model(),
            data,
            val,
            cfg=CFG,
            checkpoint_dir=ckpt,
            seed=1,
            loss_csv=out / "loss.csv",
        ),
        TrainingError,
        "cannot resume from checkpoint",
        str(ckpt / "ckpt-0"),
        f"delete {str(ckpt)!r} to start afresh",
        out=out,
    )
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before


def test_training_set_smaller_than_a_batch(out):
    model = _model()
    data = _toy(40, seed=1)
    rejected(
        lambda: train(
            model,
            data,
            data,
            cfg=CFG,
            checkpoint_dir=out / "ckpt",
            seed=1,
            loss_csv=out / "loss.csv",
        ),
        TrainingError,
        "40 training events is less than batch_size 64",
        out=out,
    )


def test_model_of_nans_is_never_written(out):
    model = _model()
    model.adapt(*_toy(200, seed=3))
    variable = model.trainable_variables[0]
    variable.assign(np.full(variable.shape, np.nan, np.float32))
    rejected(
        lambda: model.save(out / "model"),
        TrainingError,
        f"refusing to save the model to {str(out / 'model')!r}",
        f"variable {variable.name!r} holds {int(np.prod(variable.shape))} NaN",
        out=out,
    )


# ---------------------------------------------------------------- entry point


def _workflow(tmp_path, **preparation):
    for name in ("Snakefile", "workflow", "config"):
        source = ROOT_DIR / name
        copy_ = shutil.copytree if source.is_dir() else shutil.copy
        copy_(source, tmp_path / name)
    config = load_yaml(ROOT_DIR / TINY)
    config["preparation"].update(preparation)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def _snakemake(cwd, *targets):
    return subprocess.run(
        [SNAKEMAKE, *targets, "--cores", "1", "--configfile", "bad.yaml"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_snakemake_rejects_a_bad_event_file(tmp_path):
    work = _workflow(tmp_path, inputs=["data/user events.root"])
    (work / "data").mkdir()
    (work / "data" / "user events.root").write_text("not a ROOT file\n")
    result = _snakemake(work, "results/prepared/train.npz")
    assert result.returncode != 0
    # Seen by its first bytes when the workflow is parsed, before any job.
    assert "cinnflow: event file 'data/user events.root' is not a ROOT" in result.stderr
    assert "starts with b'not '" in result.stderr
    assert not (work / "results").exists() and not (work / "logs").exists()


def test_snakemake_rejects_a_file_that_is_not_lhe_before_any_job(tmp_path):
    work = _workflow(tmp_path)
    (work / "notes.lhe").write_text("run card\n" * 3)
    config = yaml.safe_load((work / "bad.yaml").read_text())
    config["events"].update(source="lhe", lhe_file="notes.lhe")
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    result = _snakemake(work, "results/prepared/train.npz")
    assert result.returncode != 0
    assert "cinnflow: file 'notes.lhe' is not an LHE file" in result.stderr
    assert "'<LesHouchesEvents' tag in its first 50 lines" in result.stderr
    assert not (work / "results").exists() and not (work / "logs").exists()


def test_snakemake_rejects_a_bad_config_before_any_job(tmp_path):
    work = _workflow(tmp_path, splitt={"train": 1.0})
    result = _snakemake(work, "results/prepared/train.npz")
    assert result.returncode != 0
    assert "preparation: unknown key 'splitt'; did you mean 'split'?" in result.stderr
    assert not (work / "results").exists() and not (work / "logs").exists()


def test_snakemake_rejects_an_event_file_without_a_branch_before_any_job(tmp_path):
    # Checked from the tree's metadata when the workflow is parsed: a job-time
    # error would come after Snakemake removed the outputs the job replaces.
    work = _workflow(tmp_path, inputs=["data/no_mass.root"])
    (work / "data").mkdir()
    _write_without_jet_mass(work / "data" / "no_mass.root")
    result = _snakemake(work, "results/prepared/train.npz")
    assert result.returncode != 0
    assert "cinnflow: tree 'Delphes' in 'data/no_mass.root' has no branch Jet.Mass" in (
        result.stderr
    )
    assert not (work / "results").exists() and not (work / "logs").exists()


@needs_real
def test_snakemake_rejects_a_truncated_lhe_file_before_any_job(tmp_path):
    work = _workflow(tmp_path)
    raw = (REAL / "lhe_pp_VV_weakbosons_pythia8_100ev.lhe").read_text().splitlines()
    cut = next(i for i, line in enumerate(raw) if line.strip() == "</event>") + 3
    (work / "cut.lhe").write_text("\n".join(raw[:cut]) + "\n")
    config = yaml.safe_load((work / "bad.yaml").read_text())
    config["events"].update(source="lhe", lhe_file="cut.lhe")
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    result = _snakemake(work, "results/prepared/train.npz")
    assert result.returncode != 0
    assert "cinnflow: LHE file 'cut.lhe' is truncated: its last line is" in (
        result.stderr
    )
    assert "expected the closing </LesHouchesEvents> tag" in result.stderr
    assert not (work / "results").exists() and not (work / "logs").exists()


def test_event_tree_written_as_rntuple(inp, out):
    # uproot writes a dict assigned to a file key as an RNTuple, not a TTree.
    path = inp / "rntuple.root"
    with uproot.recreate(path) as handle:
        handle["Delphes"] = {"x": np.arange(3.0)}
    rejected(
        _prepare([path], out),
        InputFileError,
        "has no tree 'Delphes'; trees there: []; 'Delphes' there is a",
        "expected a TTree",
        out=out,
    )
