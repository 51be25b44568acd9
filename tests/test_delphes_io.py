"""Tests of the Delphes-schema writer and reader (ours and real Delphes files)."""

import shutil

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import REAL_DATA as REAL  # noqa: E402

from cinnflow.errors import InputFileError
from cinnflow.io.delphes import DelphesWriter, read_all_collections, read_delphes
from cinnflow.io.lhe import check_lhe
from cinnflow.preparation.pairing import READ_COLLECTIONS, parton_level

ZH = REAL / "delphes_pp_Zh_inclusive_100ev.root"
TTBAR_DUP = REAL / "delphes_pp_ttbar_gg_10ev_dupbranch.root"
EIC = REAL / "delphes_eic_proton_gun_1000ev.root"
HEPMC = REAL / "hepmc2_pp_ttbar_pythia8_1ev.hepmc"

DETECTOR = {
    "Jet": ["PT", "Eta", "Phi", "Mass", "BTag"],
    "Electron": ["PT", "Eta", "Phi", "Charge"],
    "Muon": ["PT", "Eta", "Phi", "Charge"],
}
PARTICLE = {"Particle": ["PID", "Status", "M1", "M2", "PT", "Eta", "Phi", "Mass"]}

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="real Delphes files absent")


def _random_collections(seed, n_events):
    rng = np.random.default_rng(seed)

    def jagged(fields, mean):
        counts = rng.poisson(mean, n_events)
        total = int(counts.sum())
        columns = {}
        for name, kind in fields.items():
            if kind == "int":
                columns[name] = rng.integers(-30, 30, total).astype(np.int32)
            else:
                columns[name] = rng.normal(0, 50, total).astype(np.float32)
        return ak.unflatten(ak.zip(columns), counts)

    number = np.arange(n_events, dtype=np.int64)
    particle = {k: "int" for k in ("PID", "Status", "M1", "M2", "D1", "D2", "Charge")}
    particle.update(
        dict.fromkeys(("Mass", "E", "Px", "Py", "Pz", "PT", "Eta", "Phi"), "float")
    )
    lepton = {"PT": "float", "Eta": "float", "Phi": "float", "Charge": "int"}
    jet = {
        "PT": "float",
        "Eta": "float",
        "Phi": "float",
        "Mass": "float",
        "BTag": "int",
    }
    return {
        "Event": ak.unflatten(ak.zip({"Number": number}), np.ones(n_events, int)),
        "Particle": jagged(particle, 20),
        "Electron": jagged(lepton, 0.7),
        "Muon": jagged(lepton, 0.7),
        "Jet": jagged(jet, 3),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("io") / "events.root"
    data = _random_collections(seed=11, n_events=150)
    with DelphesWriter(path) as writer:
        writer.write({k: v[:100] for k, v in data.items()})
        writer.write({k: v[100:] for k, v in data.items()})
    return path, data


def test_round_trip_field_by_field(written):
    path, data = written
    wanted = {name: ak.fields(arr) for name, arr in data.items()}
    back = read_delphes(path, collections=wanted)
    assert sorted(back) == sorted(data)
    for name, arr in data.items():
        assert ak.fields(back[name]) == ak.fields(arr), name
        assert ak.num(back[name]).tolist() == ak.num(arr).tolist(), name
        for field in ak.fields(arr):
            assert ak.all(back[name][field] == arr[field]), f"{name}.{field}"


def test_reader_returns_only_requested_fields_and_entry_stop(written):
    path, data = written
    back = read_delphes(path, collections={"Jet": ["Eta", "PT"]}, entry_stop=7)
    assert list(back) == ["Jet"]
    assert ak.fields(back["Jet"]) == ["Eta", "PT"]
    assert len(back["Jet"]) == 7
    assert ak.all(back["Jet"].PT == data["Jet"].PT[:7])


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "x.root"
    data = _random_collections(seed=1, n_events=5)
    with pytest.raises(RuntimeError), DelphesWriter(path) as writer:
        writer.write(data)
        raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_read_all_collections(written):
    path, data = written
    back = read_all_collections(path)
    assert sorted(back) == sorted(data)
    assert len(back["Particle"]) == 150


# ---------------------------------------------------------------- real files


@needs_real
def test_real_zh_old_delphes_pythia6():
    out = read_delphes(ZH, collections={**DETECTOR, **PARTICLE, "Event": ["Number"]})
    assert {len(v) for v in out.values()} == {100}
    jets = out["Jet"]
    assert int(ak.sum(ak.num(jets))) == 358
    assert jets.PT[0].tolist() == pytest.approx([57.06581, 55.42031, 48.19223], 1e-6)
    assert int(ak.sum(ak.num(out["Electron"]))) == 9
    assert int(ak.sum(ak.num(out["Muon"]))) == 8
    particles = out["Particle"]
    assert len(particles[0]) == 330
    # Pythia 6 codes: beams and hard process at status 3, M1 = -1 for the beams.
    assert particles.PID[0][:2].tolist() == [2212, 2212]
    assert particles.Status[0][:16].tolist() == [3] * 16
    assert particles.M1[0][:3].tolist() == [-1, -1, 0]
    assert particles.PID[0][6] == 23 and particles.M1[0][8] == 6
    assert set(np.unique(ak.to_numpy(ak.flatten(particles.Status)))) == {1, 2, 3}
    assert out["Event"].Number[0].tolist() == [1]


@needs_real
def test_real_ttbar_duplicated_particle_branch_reads_first():
    out = read_delphes(
        TTBAR_DUP,
        collections={
            "Jet": DETECTOR["Jet"],
            **PARTICLE,
            **{k: v for k, v in DETECTOR.items() if k != "Jet"},
        },
        optional=("Electron", "Muon"),
    )
    assert len(out["Jet"]) == 10
    assert out["Jet"].PT[0][0] == pytest.approx(68.99266, 1e-6)
    assert int(ak.sum(ak.num(out["Jet"]))) == 60
    particles = out["Particle"]
    assert len(particles[0]) == 2519
    # Pythia 8 codes via HepMC: beams 4, incoming 21, tops 22.
    assert particles.Status[0][:6].tolist() == [4, 4, 21, 21, 22, 22]
    assert particles.PID[0][4:6].tolist() == [6, -6]
    assert ak.all(ak.num(out["Electron"]) == 0)
    assert ak.fields(out["Muon"]) == DETECTOR["Muon"]


@needs_real
def test_real_eic_without_object_collections():
    out = read_delphes(
        EIC,
        collections={**DETECTOR, "Particle": ["PID", "Status", "E"]},
        optional=("Jet", "Electron", "Muon"),
    )
    assert len(out["Particle"]) == 1000
    assert ak.all(ak.num(out["Particle"]) == 1)
    assert ak.all(out["Particle"].PID == 2212)
    assert out["Particle"].E[0][0] == pytest.approx(275.0)
    for name in DETECTOR:
        assert len(out[name]) == 1000 and ak.all(ak.num(out[name]) == 0)
        assert ak.fields(out[name]) == DETECTOR[name]


@needs_real
def test_real_missing_collection_is_an_error():
    with pytest.raises(InputFileError, match="no collection 'Jet'") as info:
        read_delphes(EIC, collections={"Jet": ["PT"]})
    assert str(EIC) in str(info.value)


@needs_real
@pytest.mark.parametrize("path", [ZH, TTBAR_DUP])
def test_real_files_read_without_asking_for_every_branch(path):
    """Particle.fBits of real files does not deserialise: read only what is asked."""
    with uproot.open(path) as handle:
        tree = handle["Delphes"]
        assert "Weight" not in tree.keys()  # both files lack the Weight branch
        with pytest.raises(ValueError, match="fBits"):
            tree.arrays(library="ak")
    out = read_delphes(
        path, collections=READ_COLLECTIONS, optional=("Electron", "Muon")
    )
    assert set(out) == set(READ_COLLECTIONS)
    assert ak.fields(out["Particle"]) == READ_COLLECTIONS["Particle"]
    assert len(out["Particle"]) == {ZH: 100, TTBAR_DUP: 10}[path]


@needs_real
def test_real_pythia8_file_hard_process_at_status_22_and_23():
    """Pythia 8 codes through HepMC: t t~ at 22, their b quarks at 23 (g g -> t t~)."""
    particles = read_delphes(
        TTBAR_DUP, collections=READ_COLLECTIONS, optional=("Electron", "Muon")
    )["Particle"]
    spec = {
        "status": [21, 22, 23],
        "fields": ["pt", "eta"],
        "objects": [
            {"name": "b", "pid": [5], "mother_pid": [6]},
            {"name": "bbar", "pid": [-5], "mother_pid": [-6]},
            {"name": "t", "pid": [6], "status": [22]},
        ],
    }
    x, found = parton_level(particles, spec)
    expected = []  # the same search, as a plain loop over the record
    for event in ak.to_list(particles):
        pts = [
            max(
                (
                    p["PT"]
                    for p in event
                    if p["Status"] == 23
                    and p["PID"] == pid
                    and p["M1"] >= 0
                    and event[p["M1"]]["PID"] == mother
                ),
                default=np.nan,
            )
            for pid, mother in ((5, 6), (-5, -6))
        ]
        top = [p["PT"] for p in event if p["Status"] == 22 and p["PID"] == 6]
        expected.append([*pts, max(top, default=np.nan)])
    np.testing.assert_allclose(x[:, [0, 2, 4]], expected)
    assert found.all() and len(found) == 10
    assert np.all(x[:, 0] > 0) and np.all(np.abs(x[:, 1]) < 10)


@needs_real
def test_hepmc_file_is_refused_with_a_clear_error():
    """HepMC is not a supported input: the error says so and how to convert it."""
    with pytest.raises(InputFileError, match=r"not a ROOT file.*HepMC.*2\.06") as info:
        read_delphes(HEPMC, collections={"Jet": ["PT"]})
    assert str(HEPMC) in str(info.value) and "Delphes" in str(info.value)
    with pytest.raises(InputFileError, match="not an LHE file.*HepMC") as info:
        check_lhe(HEPMC)
    assert str(HEPMC) in str(info.value)


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.root"
    with pytest.raises(InputFileError, match="does not exist") as info:
        read_delphes(path, collections={"Jet": ["PT"]})
    assert str(path) in str(info.value)


def test_not_a_root_file(tmp_path):
    path = tmp_path / "text.root"
    path.write_text("hello\n")
    with pytest.raises(InputFileError, match="not a ROOT file"):
        read_delphes(path, collections={"Jet": ["PT"]})


def test_truncated_file(written, tmp_path):
    path, _ = written
    cut = tmp_path / "cut.root"
    raw = path.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputFileError, match="truncated") as info:
        read_delphes(cut, collections={"Jet": ["PT"]})
    assert str(cut) in str(info.value)


def test_missing_tree_lists_trees(written):
    path, _ = written
    with pytest.raises(InputFileError, match=r"no tree 'Events'.*\['Delphes'\]"):
        read_delphes(path, collections={"Jet": ["PT"]}, tree="Events")


def test_missing_branch_lists_nearest(written):
    path, _ = written
    with pytest.raises(InputFileError, match=r"no branch Jet\.Pt.*'PT'"):
        read_delphes(path, collections={"Jet": ["Pt"]})


@needs_real
def test_missing_branch_in_real_file(tmp_path):
    with pytest.raises(InputFileError, match=r"Jet\.PTT.*'PT'") as info:
        read_delphes(ZH, collections={"Jet": ["PTT"]})
    assert str(ZH) in str(info.value)


def test_nan_values_are_rejected(tmp_path):
    path = tmp_path / "nan.root"
    data = _random_collections(seed=3, n_events=10)
    pt = ak.to_numpy(ak.flatten(data["Jet"].PT)).copy()
    pt[2] = np.nan
    data["Jet"] = ak.with_field(
        data["Jet"], ak.unflatten(pt, ak.num(data["Jet"])), "PT"
    )
    with DelphesWriter(path) as writer:
        writer.write(data)
    with pytest.raises(InputFileError, match=r"Jet\.PT.*non-finite") as info:
        read_delphes(path, collections={"Jet": ["PT"]})
    assert str(path) in str(info.value)
    # Collections without NaN still read.
    read_delphes(path, collections={"Muon": ["PT"]})


def test_copy_of_real_file_still_reads(tmp_path):
    if not ZH.is_file():
        pytest.skip("real Delphes files absent")
    copy = tmp_path / "zh.root"
    shutil.copy(ZH, copy)
    out = read_delphes(copy, collections={"Jet": ["PT"]}, entry_stop=3)
    assert len(out["Jet"]) == 3
