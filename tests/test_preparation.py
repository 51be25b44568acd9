"""Pairing of parton-level hard process and detector objects, splitting, provenance."""

import copy
import hashlib
import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from cinnflow.config import load_process, load_yaml
from cinnflow.errors import ConfigError, InputFileError
from cinnflow.events.generate import simulate
from cinnflow.io.delphes import read_delphes
from cinnflow.preparation.pairing import READ_COLLECTIONS, detector_level, parton_level
from cinnflow.preparation.prepare import SPLITS, load_arrays, prepare

ZW = load_process("config/processes/zw.yaml")


def _particles(rows_per_event):
    """Jagged Particle records from rows (PID, Status, M1, PT, Eta, Phi, Mass)."""
    fields = ["PID", "Status", "M1", "PT", "Eta", "Phi", "Mass"]
    events = [
        {field: [row[i] for row in rows] for i, field in enumerate(fields)}
        for rows in rows_per_event
    ]
    return ak.zip(
        {field: ak.Array([event[field] for event in events]) for field in fields}
    )


# A Pythia 8 record as seen in real output: the decay products point at a recoil copy
# of the boson (index 4 and 5), not at the status -22 original (2 and 3).
PYTHIA8_EVENT = [
    (2, -21, -1, 0.0, 0.0, 0.0, 0.0),  # 0 incoming
    (-1, -21, -1, 0.0, 0.0, 0.0, 0.0),  # 1 incoming
    (23, -22, 0, 48.5, 0.3, 1.0, 91.0),  # 2 Z
    (24, -22, 0, 48.5, -0.2, -2.1, 80.0),  # 3 W+
    (23, -44, 2, 48.5, 0.3, 1.0, 91.0),  # 4 Z copy
    (24, -44, 3, 48.5, -0.2, -2.1, 80.0),  # 5 W copy
    (13, 23, 4, 47.9, 0.5, 0.4, 0.1),  # 6 mu-
    (-13, 23, 4, 8.2, -1.0, 2.9, 0.1),  # 7 mu+
    (-3, -23, 5, 12.5, 1.1, -0.7, 0.5),  # 8 sbar
    (4, -23, 5, 51.0, -0.4, -2.5, 1.5),  # 9 c
    (22, 1, 6, 3.0, 0.1, 0.1, 0.0),  # 10 final-state photon
]
# Pythia 6 style: status 3 documentation lines, mothers are the bosons themselves.
PYTHIA6_EVENT = [
    (2, 3, -1, 0.0, 0.0, 0.0, 0.0),
    (-1, 3, -1, 0.0, 0.0, 0.0, 0.0),
    (23, 3, 0, 30.0, 0.0, 0.0, 91.0),
    (-24, 3, 0, 30.0, 0.0, 0.0, 80.0),
    (11, 3, 2, 20.0, 0.1, 0.2, 0.0),
    (-11, 3, 2, 25.0, 0.3, 0.4, 0.0),
    (1, 3, 3, 60.0, 0.5, 0.6, 0.0),
    (-2, 3, 3, 70.0, 0.7, 0.8, 0.0),
]
# No W: the quark objects cannot be found.
INCOMPLETE_EVENT = [(23, -22, -1, 10.0, 0, 0, 91.0), (11, 23, 0, 5.0, 0, 0, 0)]


def test_parton_level_follows_boson_copies_and_orders_by_pt():
    x, found = parton_level(
        _particles([PYTHIA8_EVENT, PYTHIA6_EVENT, INCOMPLETE_EVENT]), ZW["parton"]
    )
    assert found.tolist() == [True, True, False]
    # q1 is the harder quark, l1 the negative lepton (PID > 0).
    np.testing.assert_allclose(
        x[0],
        [51.0, -0.4, -2.5, 12.5, 1.1, -0.7, 47.9, 0.5, 0.4, 8.2, -1.0, 2.9],
    )
    np.testing.assert_allclose(
        x[1],
        [70.0, 0.7, 0.8, 60.0, 0.5, 0.6, 20.0, 0.1, 0.2, 25.0, 0.3, 0.4],
    )
    assert np.isnan(x[2, 0])


def _leptons(rows):
    fields = ["PT", "Eta", "Phi", "Charge"]
    return ak.Array(
        [[dict(zip(fields, lepton, strict=True)) for lepton in event] for event in rows]
    )


def test_detector_level_selects_two_jets_and_an_os_sf_pair():
    jet = {"PT": 30.0, "Eta": 0.1, "Phi": 0.2, "Mass": 5.0}
    jets = ak.Array(
        [
            [jet, {**jet, "PT": 60.0, "Mass": 8.0}],  # ok; 60 GeV jet comes first
            [jet, jet],  # same-sign electrons
            [jet, jet, jet],  # three jets
            [jet, jet],  # e mu: different flavour
            [jet, jet],  # ok with muons
        ]
    )
    electrons = _leptons(
        [
            [(40.0, 0.5, 1.0, 1), (30.0, -0.5, -1.0, -1)],
            [(40.0, 0.5, 1.0, 1), (30.0, -0.5, -1.0, 1)],
            [(40.0, 0.5, 1.0, 1), (30.0, -0.5, -1.0, -1)],
            [(40.0, 0.5, 1.0, 1)],
            [],
        ]
    )
    muons = _leptons(
        [[], [], [], [(20.0, 0, 0, -1)], [(20.0, 1, 2, 1), (25, 0, 0, -1)]]
    )
    events = {"Jet": jets, "Electron": electrons, "Muon": muons}
    c, selected, cutflow = detector_level(events, ZW["detector"])
    assert selected.tolist() == [True, False, False, False, True]
    assert cutflow == {
        "all": 5,
        "jet_multiplicity": 4,
        "lepton_multiplicity": 4,
        "opposite_sign_same_flavour": 2,
    }
    # j1 (60 GeV), j2, l1 = negative electron, l2 = positive electron
    np.testing.assert_allclose(
        c[0],
        [
            60,
            0.1,
            0.2,
            8,
            30,
            0.1,
            0.2,
            5,
            30,
            -0.5,
            -1,
            0.000511,
            40,
            0.5,
            1,
            0.000511,
        ],
    )
    assert c[4, 8] == pytest.approx(25.0) and c[4, 11] == pytest.approx(0.10566)
    assert np.isnan(c[1]).all()


from conftest import REAL_DATA as REAL  # noqa: E402

ZH_FILE = REAL / "delphes_pp_Zh_inclusive_100ev.root"
needs_real = pytest.mark.skipif(not ZH_FILE.exists(), reason="../shared not present")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A small ZW sample through the real event chain."""
    path = tmp_path_factory.mktemp("events") / "zw.root"
    simulate(
        output=path,
        n_events=600,
        seed=3,
        settings=ZW["pythia_settings"],
        detector_card=load_yaml("config/detector/atlas.yaml"),
        jets={"radius": 0.6, "pt_min_gev": 25.0, "eta_max": 2.5},
    )
    return path


def test_prepare_pairs_the_file_it_reads_and_splits_reproducibly(simulated, tmp_path):
    def run(folder):
        outputs = {name: folder / f"{name}.npz" for name in SPLITS}
        sizes = prepare(
            [simulated],
            ZW,
            fractions={"train": 0.6, "val": 0.2, "test": 0.2},
            seed=11,
            outputs=outputs,
            provenance_path=folder / "provenance.json",
            config={"seed": 11},
        )
        return sizes, {name: load_arrays(path) for name, path in outputs.items()}

    sizes, arrays = run(tmp_path / "a")
    _, again = run(tmp_path / "b")
    for name in SPLITS:  # same seed, bit-identical splits and files
        for key, value in arrays[name].items():
            np.testing.assert_array_equal(value, again[name][key])
        first = (tmp_path / "a" / f"{name}.npz").read_bytes()
        assert first == (tmp_path / "b" / f"{name}.npz").read_bytes()

    # Every row is the leading jets and the OS lepton pair of the event it names.
    events = read_delphes(simulated, collections=READ_COLLECTIONS, optional=())
    test = arrays["test"]
    assert list(test["detector_names"][:4]) == ["j1_pt", "j1_eta", "j1_phi", "j1_mass"]
    assert test["x_parton"].shape[1] == 12 and test["c_detector"].shape[1] == 16
    rows = test["event_id"][:, 1]
    jets = events["Jet"][rows]
    np.testing.assert_allclose(test["c_detector"][:, 0], ak.to_numpy(jets.PT[:, 0]))
    np.testing.assert_allclose(test["c_detector"][:, 5], ak.to_numpy(jets.Eta[:, 1]))
    assert np.all(ak.num(jets) == 2)
    # Leptons at parton and detector level agree closely (same particles).
    assert np.median(np.abs(test["x_parton"][:, 7] - test["c_detector"][:, 9])) < 0.01
    record = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert record["split_seed"] == 11 and record["split_sizes"] == sizes
    assert (
        record["inputs"][0]["sha256"]
        == hashlib.sha256(simulated.read_bytes()).hexdigest()
    )


@needs_real
def test_real_pythia6_file_gives_its_z_leptons_and_a_clear_error_for_zw():
    events = read_delphes(ZH_FILE, collections=READ_COLLECTIONS, optional=())
    leptons = {
        "status": [1, 3, 21, 22, 23],
        "fields": ["pt", "eta", "phi"],
        "objects": [
            {"name": "l1", "pid": [11, 13], "mother_pid": [23], "rank": 0},
            {"name": "l2", "pid": [-11, -13], "mother_pid": [23], "rank": 0},
        ],
    }
    x, found = parton_level(events["Particle"], leptons)
    direct = []  # the same search, written as a plain loop over the record
    for event in ak.to_list(events["Particle"]):
        from_z = [
            p["PID"]
            for p in event
            if p["Status"] == 3 and p["M1"] >= 0 and event[p["M1"]]["PID"] == 23
        ]
        direct.append(
            any(pid in (11, 13) for pid in from_z)
            and any(pid in (-11, -13) for pid in from_z)
        )
    assert found.tolist() == direct and sum(direct) == 6
    assert np.all(x[found][:, 0] > 0)

    with pytest.raises(InputFileError) as err:
        prepare(
            [ZH_FILE],
            ZW,
            fractions={"train": 0.8, "val": 0.1, "test": 0.1},
            seed=1,
            outputs={name: Path("/nonexistent") / name for name in SPLITS},
            provenance_path=Path("/nonexistent/provenance.json"),
            config={},
        )
    text = str(err.value)
    assert str(ZH_FILE) in text and "events pass the selection" in text
    # One event has h -> WW -> qq beside Z -> ll: a ZW-like parton level.
    assert "1 events pass" in text and "'parton_level_found': 1" in text


def test_selection_keeping_no_events_writes_nothing(simulated, tmp_path):
    """A selection that keeps no events stops with the file and the cut flow."""
    strict = copy.deepcopy(ZW)
    strict["detector"]["n_jets"] = [9, 9]
    outputs = {name: tmp_path / f"{name}.npz" for name in SPLITS}
    with pytest.raises(InputFileError, match="0 events pass the selection") as info:
        prepare(
            [simulated],
            strict,
            fractions={"train": 0.6, "val": 0.2, "test": 0.2},
            seed=1,
            outputs=outputs,
            provenance_path=tmp_path / "provenance.json",
            config={},
        )
    assert str(simulated) in str(info.value)
    assert "'jet_multiplicity': 0" in str(info.value)
    # Too few events for the three splits: checked before any file is written.
    with pytest.raises(InputFileError, match="split 'val' would be empty"):
        prepare(
            [simulated],
            ZW,
            fractions={"train": 0.998, "val": 0.001, "test": 0.001},
            seed=1,
            outputs=outputs,
            provenance_path=tmp_path / "provenance.json",
            config={},
        )
    assert list(tmp_path.iterdir()) == []


def test_detector_level_generic_in_leptons():
    """One lepton, or none (a veto), instead of the ZW pair; bad sections named."""
    jet = {"PT": 40.0, "Eta": 0.0, "Phi": 0.0, "Mass": 4.0}
    jets = ak.Array([[jet], [jet], [jet]])
    electrons = _leptons(
        [[(30.0, 0.1, 0.2, -1)], [], [(30.0, 0, 0, 1), (20.0, 0, 0, -1)]]
    )
    muons = electrons[:, :0]
    events = {"Jet": jets, "Electron": electrons, "Muon": muons}
    one = {"n_jets": [1, 3], "jets": ["j1"], "leptons": ["l1"], "fields": ["pt", "eta"]}
    c, selected, cutflow = detector_level(events, one)
    assert selected.tolist() == [True, False, False]
    np.testing.assert_allclose(c[0], [40.0, 0.0, 30.0, 0.1])
    assert cutflow == {"all": 3, "jet_multiplicity": 3, "lepton_multiplicity": 1}
    _, selected, _ = detector_level(events, {**one, "leptons": []})
    assert selected.tolist() == [False, True, False]
    with pytest.raises(ConfigError, match=r"n_jets is \[0, 3\]"):
        detector_level(events, {**one, "n_jets": [0, 3]})
    with pytest.raises(ConfigError, match="unknown keys \\['mother'\\]"):
        parton_level(
            _particles([PYTHIA8_EVENT]),
            {
                "status": [23],
                "fields": ["pt"],
                "objects": [{"name": "q", "pid": [4], "mother": [24]}],
            },
        )
