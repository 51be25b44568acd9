"""Tests of the event chain: detector model, LHE checks, Pythia runs, merging."""

import copy
import gzip
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import yaml

from cinnflow.errors import ConfigError, InputFileError
from cinnflow.events import Detector, merge, simulate
from cinnflow.io.delphes import read_delphes
from cinnflow.io.lhe import check_lhe

CARD_PATH = Path(__file__).resolve().parents[1] / "config" / "detector" / "atlas.yaml"
from conftest import REAL_DATA as REAL  # noqa: E402

ZW_SETTINGS = [
    "WeakDoubleBoson:ffbar2ZW = on",
    "23:onMode = off",
    "23:onIfAny = 11 13",
    "24:onMode = off",
    "24:onIfAny = 1 2 3 4",
]
JETS = {"radius": 0.4, "pt_min_gev": 20.0, "eta_max": 4.5}
N_TOY = 20000


@pytest.fixture(scope="module")
def card():
    with CARD_PATH.open() as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def detector(card):
    return Detector(card)


def _toy_particles(pid, pt, eta, phi, event_counts):
    """Final-state particle records (massless) for the detector's lepton stage."""
    pid, pt, eta, phi = (np.asarray(x) for x in (pid, pt, eta, phi))
    fields = {
        "PID": pid.astype(np.int32),
        "Status": np.ones(len(pid), np.int32),
        "PT": pt,
        "Eta": eta,
        "Phi": phi,
        "E": pt * np.cosh(eta),
        "Charge": -np.sign(pid).astype(np.int32),
        "Visible": np.ones(len(pid), bool),
    }
    return ak.unflatten(ak.zip(fields), event_counts)


def _within(value, expected, sigma, n_sigma=4):
    assert abs(value - expected) < n_sigma * sigma, (value, expected, sigma)


# ------------------------------------------------------------- detector model


@pytest.mark.parametrize(
    ("flavour", "pid", "eta_low", "eta_high", "expected"),
    [
        ("electron", 11, 0.0, 1.5, 0.95),
        ("electron", 11, 1.5, 2.5, 0.85),
        ("muon", 13, 0.0, 1.5, 0.95),
        ("muon", 13, 1.5, 2.5, 0.85),
        ("electron", 11, 2.6, 3.0, 0.0),
    ],
)
def test_lepton_efficiency_matches_card(
    detector, flavour, pid, eta_low, eta_high, expected
):
    rng = np.random.default_rng(5)
    eta = rng.uniform(eta_low, eta_high, N_TOY) * rng.choice([-1, 1], N_TOY)
    phi = rng.uniform(-np.pi, np.pi, N_TOY)
    particles = _toy_particles(
        np.full(N_TOY, pid), np.full(N_TOY, 50.0), eta, phi, np.ones(N_TOY, int)
    )
    electrons, muons, used = detector.leptons(particles, np.random.default_rng(6))
    found = electrons if flavour == "electron" else muons
    fraction = float(ak.mean(ak.num(found)))
    sigma = max(np.sqrt(expected * (1 - expected) / N_TOY), 1e-6)
    _within(fraction, expected, sigma)
    assert int(ak.sum(used)) == int(ak.sum(ak.num(found)))


def test_lepton_below_pt_threshold_is_lost(detector):
    n = 2000
    particles = _toy_particles(
        np.full(n, 13), np.full(n, 5.0), np.zeros(n), np.zeros(n), np.ones(n, int)
    )
    _, muons, _ = detector.leptons(particles, np.random.default_rng(1))
    assert int(ak.sum(ak.num(muons))) == 0


def test_electron_energy_resolution_matches_card(detector):
    rng = np.random.default_rng(7)
    energy = np.full(N_TOY, 100.0)
    eta = np.zeros(N_TOY)
    pt = detector.smear_leptons("electron", energy, eta, energy, rng)
    expected = np.sqrt(0.0017**2 * 100.0**2 + 0.101**2 * 100.0)  # card, |eta| < 3.2
    assert detector.electron_energy_sigma(np.array([100.0]), np.array([0.0]))[
        0
    ] == pytest.approx(expected)
    _within(np.std(pt), expected, expected / np.sqrt(2 * N_TOY))
    _within(np.mean(pt), 100.0, expected / np.sqrt(N_TOY))


@pytest.mark.parametrize(
    ("eta", "constant", "slope"), [(0.2, 0.01, 1e-4), (2.0, 0.025, 3.5e-4)]
)
def test_muon_pt_resolution_matches_card(detector, eta, constant, slope):
    rng = np.random.default_rng(8)
    pt_true = 200.0
    pt = detector.smear_leptons(
        "muon", np.full(N_TOY, pt_true), np.full(N_TOY, eta), np.zeros(N_TOY), rng
    )
    expected = np.hypot(constant, slope * pt_true)
    spread = np.std(pt / pt_true)
    _within(spread, expected, expected / np.sqrt(2 * N_TOY))


@pytest.mark.parametrize(("flavour", "pid"), [("electron", 11), ("muon", 13)])
def test_lepton_direction_resolution_matches_card(detector, flavour, pid):
    rng = np.random.default_rng(10)
    eta = rng.uniform(-1.0, 1.0, N_TOY)
    phi = np.full(N_TOY, np.pi - 1e-4)  # next to the seam: wrapping is checked
    particles = _toy_particles(
        np.full(N_TOY, pid), np.full(N_TOY, 60.0), eta, phi, np.ones(N_TOY, int)
    )
    electrons, muons, _ = detector.leptons(particles, np.random.default_rng(11))
    found = electrons if flavour == "electron" else muons
    kept = ak.to_numpy(ak.num(found)) == 1
    eta_out = ak.to_numpy(ak.flatten(found.Eta))
    phi_out = ak.to_numpy(ak.flatten(found.Phi))
    assert np.all(np.abs(phi_out) <= np.pi)
    d_eta = eta_out - eta[kept]
    d_phi = np.mod(phi_out - phi[kept] + np.pi, 2 * np.pi) - np.pi
    expected = 5.0e-4  # card: angular_resolution of both flavours
    n = int(kept.sum())
    for spread in (d_eta, d_phi):
        # float32 storage adds a rounding spread of about 1e-7, negligible here.
        _within(np.std(spread), expected, expected / np.sqrt(2 * n))
        _within(np.mean(spread), 0.0, expected / np.sqrt(n))


def test_negative_angular_resolution_is_an_error(card):
    broken = copy.deepcopy(card)
    broken["electron"]["angular_resolution"]["phi"] = -1.0
    with pytest.raises(ConfigError, match=r"electron\.angular_resolution\.phi.*-1\.0"):
        Detector(broken)


def _toy_jets(energy, eta, n):
    pt = energy / np.cosh(eta)
    p4 = {
        "px": np.full(n, pt),
        "py": np.zeros(n),
        "pz": np.full(n, pt * np.sinh(eta)),
        "E": np.full(n, energy),
    }
    return ak.unflatten(ak.zip(p4), np.ones(n, int))


def _no_objects(n):
    lepton = ak.zip({k: np.zeros(0) for k in ("PT", "Eta", "Phi", "Charge")})
    particle = ak.zip({k: np.zeros(0) for k in ("PID", "PT", "Eta", "Phi")})
    zeros = np.zeros(n, int)
    return (
        ak.unflatten(lepton, zeros),
        ak.unflatten(lepton, zeros),
        ak.unflatten(particle, zeros),
    )


@pytest.mark.parametrize(
    ("eta", "constant", "stochastic", "noise"),
    [(0.5, 0.0302, 0.5205, 1.59), (2.5, 0.05, 0.706, 0.0)],
)
def test_jet_energy_resolution_matches_card(card, eta, constant, stochastic, noise):
    flat_scale = copy.deepcopy(card)
    flat_scale["jet"]["energy_scale"] = {"offset_gev": 0.0, "slope_eta": 0.0}
    detector = Detector(flat_scale)
    energy = 150.0
    jets = detector.jets(
        _toy_jets(energy, eta, N_TOY),
        *_no_objects(N_TOY),
        np.random.default_rng(9),
        pt_min_gev=1.0,
        eta_max=5.0,
    )
    assert int(ak.sum(ak.num(jets))) == N_TOY
    response = ak.to_numpy(ak.flatten(jets.PT)) / (energy / np.cosh(eta))
    expected = np.sqrt(stochastic**2 / energy + constant**2 + noise**2 / energy**2)
    _within(np.std(response), expected, expected / np.sqrt(2 * N_TOY))
    _within(np.mean(response), 1.0, expected / np.sqrt(N_TOY))
    assert np.allclose(ak.to_numpy(ak.flatten(jets.Eta)), eta, atol=1e-5)


def test_jet_energy_scale_matches_card(card):
    no_smearing = copy.deepcopy(card)
    for row in no_smearing["jet"]["energy_resolution"]:
        row.update(constant=0.0, stochastic=0.0, noise_gev=0.0)
    no_smearing["jet"]["energy_scale"] = {"offset_gev": 3.0, "slope_eta": 0.2}
    detector = Detector(no_smearing)
    jets = detector.jets(
        _toy_jets(40.0, 1.0, 3),
        *_no_objects(3),
        np.random.default_rng(0),
        pt_min_gev=1.0,
        eta_max=5.0,
    )
    pt = 40.0 / np.cosh(1.0)
    expected = pt * np.sqrt((3.0 - 0.2) ** 2 / pt + 1.0)
    assert ak.to_numpy(ak.flatten(jets.PT)) == pytest.approx(expected, rel=1e-5)


def test_isolation_rejects_lepton_with_hadron_nearby(detector):
    # Event 0: muon alone. Event 1: muon with a 30 % pt hadron at Delta R 0.3.
    particles = _toy_particles(
        [13, 13, 211], [50.0, 50.0, 15.0], [0.0, 0.0, 0.3], [0.0, 0.0, 0.0], [1, 2]
    )
    found = 0
    for seed in range(20):
        _, muons, _ = detector.leptons(particles, np.random.default_rng(seed))
        assert len(muons[1]) == 0
        found += len(muons[0])
    assert found > 10  # efficiency 0.95 for the isolated one


def test_card_errors_name_the_key(card):
    broken = copy.deepcopy(card)
    del broken["muon"]["isolation"]["pt_ratio_max"]
    with pytest.raises(ConfigError, match=r"muon\.isolation\.pt_ratio_max"):
        Detector(broken)


# ------------------------------------------------------------------ LHE checker


def test_check_lhe_errors(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        check_lhe(tmp_path / "missing.lhe")
    not_lhe = tmp_path / "x.lhe"
    not_lhe.write_text("just text\n")
    with pytest.raises(InputFileError, match="not an LHE file"):
        check_lhe(not_lhe)
    good_event = [
        "<event>",
        " 1 1 1.0 91.0 0.0078 0.118",
        " 23 1 0 0 0 0 0 0 1 91 91 0 9",
        "</event>",
    ]
    bad_event = [
        "<event>",
        " 2 1 1.0 91.0 0.0078 0.118",
        " 23 1 0 0 0 0 0 0 1 91 91 0 9",
        " 11 1 oops",
        "</event>",
    ]
    lines = [
        '<LesHouchesEvents version="1.0">',
        "<init>",
        "</init>",
        *good_event,
        *bad_event,
        "</LesHouchesEvents>",
    ]
    bad = tmp_path / "bad.lhe.gz"
    with gzip.open(bad, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    with pytest.raises(InputFileError, match=r"event 1 \(line 11\)") as info:
        check_lhe(bad)
    assert str(bad) in str(info.value)


@pytest.mark.skipif(not REAL.is_dir(), reason="real LHE files absent")
def test_check_lhe_real_files():
    assert check_lhe(REAL / "lhe_pp_VV_weakbosons_pythia8_100ev.lhe") == 100
    assert check_lhe(REAL / "lhe_pp_ZZ_jjvv_mg5_100ev.lhe.gz") == 100
    assert check_lhe(REAL / "lhe_pp_ttbar_mg5_100ev.lhe.gz") == 100
    assert check_lhe(REAL / "lhe_pp_Zjets_mlm_mg5_10000ev.lhe.gz") == 10000


# ------------------------------------------------------------------ Pythia runs


@pytest.fixture(scope="module")
def zw_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "zw.root"
    stats = simulate(
        output=path,
        n_events=300,
        seed=123,
        settings=ZW_SETTINGS,
        detector_card=CARD_PATH,
        jets=JETS,
        batch_size=150,
    )
    return path, stats


def test_simulate_zw_gives_z_to_leptons_and_jets(zw_file):
    path, stats = zw_file
    assert stats["n_events"] == 300
    out = read_delphes(
        path,
        collections={
            "Electron": ["PT", "Eta", "Phi", "Charge"],
            "Muon": ["PT", "Eta", "Phi", "Charge"],
            "Jet": ["PT", "Eta", "Phi", "Mass", "BTag"],
            "Event": ["Number"],
        },
    )
    assert ak.flatten(out["Event"].Number).tolist() == list(range(300))
    masses = []
    for name, mass in (("Electron", 0.000511), ("Muon", 0.10566)):
        pair = out[name][ak.num(out[name]) == 2]
        pair = pair[pair.Charge[:, 0] != pair.Charge[:, 1]]
        pt, eta, phi = (
            ak.to_numpy(pair[k]).astype(float) for k in ("PT", "Eta", "Phi")
        )
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
        m2 = energy.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2
        masses.append(np.sqrt(m2))
    masses = np.concatenate(masses)
    assert len(masses) > 100
    assert np.median(masses) == pytest.approx(91.2, abs=2.0)
    assert float(ak.mean(ak.num(out["Jet"]))) > 1.5
    assert ak.all(out["Jet"].PT > JETS["pt_min_gev"])
    assert ak.all(abs(out["Jet"].Eta) < JETS["eta_max"])
    assert ak.all(out["Jet"].PT[:, :-1] >= out["Jet"].PT[:, 1:])


def test_simulate_particle_record_follows_pythia8_conventions(zw_file):
    path, _ = zw_file
    particles = read_delphes(
        path, collections={"Particle": ["PID", "Status", "M1", "M2", "D1", "PT"]}
    )["Particle"]
    status = ak.to_numpy(ak.flatten(particles.Status))
    assert set(np.unique(status)) >= {1, 2, 4, 21, 22, 23}
    assert ak.all(particles.Status[:, :2] == 4) and ak.all(particles.M1[:, :2] == -1)
    # Z and W of the hard process at status 22; their decay products point at a
    # (copy of the) boson through M1 and are quarks or charged leptons.
    hard = particles[particles.Status == 22]
    assert ak.to_list(ak.sort(abs(hard.PID))) == [[23, 24]] * len(particles)
    has_mother = particles.M1 >= 0
    mother_pid = abs(particles.PID[ak.where(has_mother, particles.M1, 0)])
    decay = has_mother & ((mother_pid == 23) | (mother_pid == 24))
    # W/Z may also radiate photons (status 51); keep quarks and leptons.
    decay = decay & (abs(particles.PID) <= 16)
    products = particles[decay]
    assert np.all(ak.to_numpy(ak.num(products)) == 4)
    lepton = abs(products.PID) >= 11
    assert ak.all(ak.sum(lepton, axis=1) == 2)
    assert ak.all(ak.all(abs(products.PID[~lepton]) <= 4, axis=1))
    assert ak.all(products.Status == 23)
    # Each decay lepton's D1 is its next copy (same PID) whose M1 points back; the
    # untouched ones have a status-1 copy appended by us.
    index = ak.local_index(particles)[decay]
    leptons = abs(products.PID) >= 11
    lepton_index, lepton_d1 = index[leptons], products.D1[leptons]
    assert ak.all(particles.PID[lepton_d1] == products.PID[leptons])
    assert ak.all(particles.M1[lepton_d1] == lepton_index)
    untouched = particles.Status[lepton_d1] == 1
    assert int(ak.sum(untouched)) > 100


def test_simulate_is_seeded_and_quiet(tmp_path, capfd):
    runs = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.root"
        simulate(
            output=path,
            n_events=40,
            seed=7,
            settings=ZW_SETTINGS,
            detector_card=CARD_PATH,
            jets=JETS,
        )
        runs.append(read_delphes(path, collections={"Jet": ["PT", "Eta"]})["Jet"])
    assert ak.all(runs[0].PT == runs[1].PT)
    out, _ = capfd.readouterr()
    assert "PYTHIA" not in out and "FastJet" not in out


def test_simulate_rejects_bad_config(tmp_path):
    with pytest.raises(ConfigError, match="radius"):
        simulate(
            output=tmp_path / "x.root",
            n_events=5,
            seed=1,
            settings=ZW_SETTINGS,
            detector_card=CARD_PATH,
            jets={"pt_min_gev": 20.0, "eta_max": 4.5},
        )
    with pytest.raises(ConfigError, match="Nonsense:key"):
        simulate(
            output=tmp_path / "x.root",
            n_events=5,
            seed=1,
            settings=["Nonsense:key = on"],
            detector_card=CARD_PATH,
            jets=JETS,
        )
    assert not (tmp_path / "x.root").exists()


@pytest.mark.skipif(not REAL.is_dir(), reason="real LHE files absent")
@pytest.mark.parametrize(
    ("name", "bosons"),
    [
        ("lhe_pp_VV_weakbosons_pythia8_100ev.lhe", {23, 24}),
        ("lhe_pp_ZZ_jjvv_mg5_100ev.lhe.gz", {23}),
        ("lhe_pp_Zjets_mlm_mg5_10000ev.lhe.gz", None),
        ("lhe_pp_ttbar_mg5_100ev.lhe.gz", {6, 24}),
    ],
)
def test_real_lhe_files_shower(tmp_path, name, bosons):
    path = tmp_path / "lhe.root"
    stats = simulate(
        output=path,
        n_events=8,
        seed=2,
        settings=[],
        detector_card=CARD_PATH,
        jets=JETS,
        lhe_file=REAL / name,
    )
    assert stats["n_events"] == 8
    particles = read_delphes(path, collections={"Particle": ["PID", "Status"]})[
        "Particle"
    ]
    hard = set(
        np.unique(
            np.abs(ak.to_numpy(ak.flatten(particles.PID[particles.Status == 22])))
        )
    )
    if bosons is not None:
        assert bosons <= hard
    assert ak.all(ak.sum(particles.Status == 1, axis=1) > 2)


def test_merge_concatenates_chunks(tmp_path):
    chunks = []
    for index in range(2):
        path = tmp_path / f"chunk{index}.root"
        simulate(
            output=path,
            n_events=30,
            seed=10 + index,
            settings=ZW_SETTINGS,
            detector_card=CARD_PATH,
            jets=JETS,
            particle_record="hard",
            first_event_number=30 * index,
        )
        chunks.append(path)
    merged = tmp_path / "merged.root"
    assert merge(chunks, merged) == 60
    wanted = {"Event": ["Number"], "Jet": ["PT"], "Particle": ["PID", "M1"]}
    out = read_delphes(merged, collections=wanted)
    assert ak.flatten(out["Event"].Number).tolist() == list(range(60))
    first = read_delphes(chunks[1], collections=wanted)
    assert ak.all(out["Jet"].PT[30:] == first["Jet"].PT)
    assert ak.all(out["Particle"].M1 < ak.num(out["Particle"]))
    with pytest.raises(ConfigError):
        merge([], tmp_path / "empty.root")


# ------------------------------------------------------- LHE chunks and matching

ZJETS_LHE = REAL / "lhe_pp_Zjets_mlm_mg5_10000ev.lhe.gz"


def _lhe_incoming_pz(path, n_events):
    """pz of the incoming partons (ISTUP -1) of the first events, read directly."""
    events, current, header_next = [], None, False
    with gzip.open(path, "rt") as handle:
        for line in handle:
            stripped = line.strip()
            if stripped.startswith("<event"):
                current, header_next = [], True
            elif current is not None and header_next:
                header_next = False
            elif stripped.startswith("</event"):
                events.append(sorted(current))
                current = None
                if len(events) == n_events:
                    break
            elif current is not None and stripped and stripped[0] in "-0123456789":
                fields = stripped.split()
                if len(fields) >= 13 and fields[1] == "-1":
                    current.append(float(fields[8]))
    return events


@pytest.mark.skipif(not ZJETS_LHE.is_file(), reason="real LHE files absent")
def test_lhe_chunks_shower_disjoint_slices_of_the_file(tmp_path):
    """Chunk k skips the LHE events of chunks < k (Beams:nSkipLHEFatInit)."""
    lhe = _lhe_incoming_pz(ZJETS_LHE, 60)
    chunks = []
    for index in range(2):
        path = tmp_path / f"chunk{index}.root"
        stats = simulate(
            output=path,
            n_events=30,
            seed=5 + index,
            settings=[],
            detector_card=CARD_PATH,
            jets=JETS,
            lhe_file=ZJETS_LHE,
            lhe_skip=30 * index,
            first_event_number=30 * index,
        )
        assert stats["n_lhe_events_read"] == 30
        out = read_delphes(
            path, collections={"Event": ["Number"], "Particle": ["Status", "Pz"]}
        )
        numbers = ak.to_numpy(ak.flatten(out["Event"].Number))
        incoming = out["Particle"].Pz[out["Particle"].Status == 21]
        chunks.append((numbers, [sorted(row) for row in ak.to_list(incoming)]))
    (first, first_pz), (second, second_pz) = chunks
    assert set(first) <= set(range(30)) and set(second) <= set(range(30, 60))
    assert len(first) > 25 and len(second) > 25
    # Each event is the LHE event its number names: same incoming partons.
    for numbers, pz in chunks:
        for number, row in zip(numbers, pz, strict=True):
            np.testing.assert_allclose(row, lhe[number], rtol=1e-4, atol=1e-3)
    assert not {tuple(np.round(r, 2)) for r in first_pz} & {
        tuple(np.round(r, 2)) for r in second_pz
    }


@pytest.mark.skipif(not ZJETS_LHE.is_file(), reason="real LHE files absent")
def test_lhe_slice_beyond_the_file_is_an_error(tmp_path):
    lhe = REAL / "lhe_pp_VV_weakbosons_pythia8_100ev.lhe"
    with pytest.raises(ConfigError, match=r"holds 100 events.*50\.\.109") as info:
        simulate(
            output=tmp_path / "x.root",
            n_events=60,
            seed=1,
            settings=[],
            detector_card=CARD_PATH,
            jets=JETS,
            lhe_file=lhe,
            lhe_skip=50,
        )
    assert str(lhe) in str(info.value)
    with pytest.raises(ConfigError, match="lhe_skip"):
        simulate(
            output=tmp_path / "x.root",
            n_events=5,
            seed=1,
            settings=ZW_SETTINGS,
            detector_card=CARD_PATH,
            jets=JETS,
            lhe_skip=3,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not ZJETS_LHE.is_file(), reason="real LHE files absent")
def test_mlm_matching_vetoes_events_and_keeps_lhe_numbers(tmp_path, capfd):
    process = yaml.safe_load(Path("config/processes/zjets.yaml").read_text())
    path = tmp_path / "zjets.root"
    stats = simulate(
        output=path,
        n_events=80,
        seed=3,
        settings=process["pythia_settings"],
        detector_card=CARD_PATH,
        jets=JETS,
        isr=True,
        lhe_file=ZJETS_LHE,
        lhe_skip=100,
        first_event_number=100,
        matching=process["matching"],
    )
    # MLM vetoes a sizeable fraction (about half for this file and qCut).
    assert 15 <= stats["n_events"] <= 65 and stats["n_lhe_events_read"] == 80
    numbers = ak.flatten(
        read_delphes(path, collections={"Event": ["Number"]})["Event"].Number
    )
    assert len(numbers) == stats["n_events"]
    assert ak.all(numbers >= 100) and ak.all(numbers < 180)
    assert ak.all(numbers[1:] > numbers[:-1])
    out, _ = capfd.readouterr()
    assert "JetMatching" not in out and "PYTHIA" not in out
    with pytest.raises(ConfigError, match="matching"):
        simulate(
            output=tmp_path / "y.root",
            n_events=5,
            seed=1,
            settings=ZW_SETTINGS,
            detector_card=CARD_PATH,
            jets=JETS,
            matching="mlm_madgraph",
        )


# -------------------------------------------------------------- bad LHE input


@pytest.mark.skipif(not ZJETS_LHE.is_file(), reason="real LHE files absent")
def test_truncated_lhe_files_are_errors(tmp_path):
    raw = gzip.decompress(ZJETS_LHE.read_bytes())
    plain = tmp_path / "cut.lhe"
    # Cut right after a complete event: only the missing closing tag shows it.
    plain.write_bytes(raw[: raw.index(b"</event>", len(raw) // 2) + len(b"</event>\n")])
    with pytest.raises(InputFileError, match="truncated.*</LesHouchesEvents>") as info:
        check_lhe(plain)
    assert str(plain) in str(info.value)
    packed = tmp_path / "cut.lhe.gz"
    compressed = ZJETS_LHE.read_bytes()
    packed.write_bytes(compressed[: len(compressed) // 3])
    with pytest.raises(InputFileError, match="truncated or its gzip stream") as info:
        check_lhe(packed)
    assert str(packed) in str(info.value)


def test_bad_lhe_input_leaves_no_output(tmp_path):
    output = tmp_path / "events.root"
    missing = tmp_path / "missing.lhe"
    with pytest.raises(InputFileError, match="does not exist") as info:
        simulate(
            output=output,
            n_events=5,
            seed=1,
            settings=[],
            detector_card=CARD_PATH,
            jets=JETS,
            lhe_file=missing,
        )
    assert str(missing) in str(info.value)
    root_file = tmp_path / "not_lhe.lhe"
    root_file.write_bytes(b"root" + bytes(200))
    with pytest.raises(InputFileError, match="not an LHE file.*a ROOT file"):
        simulate(
            output=output,
            n_events=5,
            seed=1,
            settings=[],
            detector_card=CARD_PATH,
            jets=JETS,
            lhe_file=root_file,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_lhe.lhe"]
