"""Tests of the injected W' (issue 5): process, mixing, injection closure, run file."""

import copy

import numpy as np
import pytest

from cinnflow.closure.injection import (
    check_injection,
    injection_closure,
    injection_counts,
    mix_samples,
)
from cinnflow.config import load_process, load_yaml, validate_config
from cinnflow.errors import ConfigError
from cinnflow.events.generate import simulate
from cinnflow.io.delphes import read_delphes
from cinnflow.physics.observables import derived_observables
from cinnflow.preparation.pairing import PARTICLE_FIELDS, column_names, parton_level

WPRIME = "config/processes/wprime.yaml"
W_PRIME_MASS = 1300.0


def test_wprime_process_takes_the_zw_sections():
    wprime, zw = load_process(WPRIME), load_process("config/processes/zw.yaml")
    for key in ("parton", "detector", "derived"):
        assert wprime[key] == zw[key]
    assert "base" not in wprime
    assert "NewGaugeBoson:ffbar2Wprime = on" in wprime["pythia_settings"]
    assert "WeakDoubleBoson:ffbar2ZW = on" not in wprime["pythia_settings"]
    assert zw["derived"]["m_WZ"] == {
        "kind": "mass",
        "of": ["q1", "q2", "l1", "l2"],
        "label": "$m_{WZ}$",
    }


def test_wprime_settings_give_a_resonance_at_1300_gev(tmp_path):
    """Hard process only (no shower, no hadronisation): m(q1 q2 l1 l2) peaks at m_W'."""
    process = load_process(WPRIME)
    output = tmp_path / "wprime.root"
    simulate(
        output=output,
        n_events=300,
        seed=3,
        settings=process["pythia_settings"],
        detector_card=load_yaml("config/detector/atlas.yaml"),
        jets={"radius": 0.6, "pt_min_gev": 25.0, "eta_max": 2.5},
        fsr=False,
        hadronisation=False,
        particle_record="hard",
    )
    particles = read_delphes(output, collections={"Particle": PARTICLE_FIELDS})
    x_parton, found = parton_level(particles["Particle"], process["parton"])
    assert found.mean() == pytest.approx(1.0)
    names, _ = column_names(
        [obj["name"] for obj in process["parton"]["objects"]],
        process["parton"]["fields"],
    )
    m_wz = derived_observables(x_parton, names, {"m_WZ": process["derived"]["m_WZ"]})
    m_wz = m_wz["m_WZ"]
    assert np.median(m_wz) == pytest.approx(W_PRIME_MASS, abs=25.0)
    window = np.mean(np.abs(m_wz - W_PRIME_MASS) < 100.0)
    assert window > 0.6, f"only {window:.2f} of the events within 100 GeV of 1300"
    # Z -> e e / mu mu and W -> light quarks, as in zw.yaml.
    m_qq = derived_observables(
        x_parton, names, {"m": {"kind": "mass", "of": ["q1", "q2"]}}
    )
    assert np.median(m_qq["m"]) == pytest.approx(80.4, abs=2.0)


def _sample(n, offset):
    names, kinds = column_names(["q1"], ["pt", "eta", "phi"])
    x = np.zeros((n, 3), np.float32)
    x[:, 0] = offset + np.arange(n)  # identifies the event and its sample
    return {
        "x_parton": x,
        "c_detector": x.copy(),
        "event_id": np.stack([np.zeros(n, int), np.arange(n)], axis=1),
        "parton_names": np.array(names),
        "parton_kinds": np.array(kinds),
        "detector_names": np.array(names),
        "detector_kinds": np.array(kinds),
    }


@pytest.mark.parametrize(
    ("n_main", "n_inj", "fraction", "expected"),
    [
        (900, 500, 0.1, (900, 100)),
        (900, 500, 0.25, (900, 300)),
        (900, 50, 0.1, (450, 50)),
        (12162, 1500, 0.1, (12159, 1351)),
    ],
)
def test_injection_counts_give_the_fraction(n_main, n_inj, fraction, expected):
    n_main_used, n_inj_used = injection_counts(n_main, n_inj, fraction)
    assert (n_main_used, n_inj_used) == expected
    total = n_main_used + n_inj_used
    assert abs(n_inj_used / total - fraction) <= 0.5 / total


def test_mixing_gives_the_fraction_and_is_seeded():
    main, injected = _sample(900, 0), _sample(500, 10000)
    mixed = mix_samples(main, injected, fraction=0.1, rng=np.random.default_rng(5))
    flag = mixed["is_injected"]
    assert flag.sum() == 100
    assert flag.size == 1000
    assert flag.mean() == pytest.approx(0.1, abs=1e-12)
    ids = mixed["x_parton"][:, 0]
    # Flags follow the events; every main event once, injected ones without repeats.
    assert np.all((ids >= 10000) == flag)
    assert np.array_equal(np.sort(ids[~flag]), np.arange(900))
    assert np.unique(ids[flag]).size == 100
    again = mix_samples(main, injected, fraction=0.1, rng=np.random.default_rng(5))
    assert np.array_equal(again["x_parton"], mixed["x_parton"])
    other = mix_samples(main, injected, fraction=0.1, rng=np.random.default_rng(6))
    assert not np.array_equal(other["x_parton"], mixed["x_parton"])


def test_mixing_rejects_other_columns():
    main, injected = _sample(100, 0), _sample(50, 1000)
    injected["parton_names"] = np.array(["j1_pt", "j1_eta", "j1_phi"])
    with pytest.raises(ConfigError, match="parton_names"):
        mix_samples(main, injected, fraction=0.1, rng=np.random.default_rng(0))


def _config_with(**injection):
    config = copy.deepcopy(load_yaml("config/config.yaml"))
    config["evaluation"]["injection"].update(injection)
    return config


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_bad_fraction_is_a_config_error(fraction):
    with pytest.raises(ConfigError, match=r"evaluation\.injection\.fraction") as err:
        validate_config(
            _config_with(fraction=fraction), "workflow/schemas/config.schema.yaml"
        )
    assert repr(fraction) in str(err.value)
    settings = _config_with(fraction=fraction)["evaluation"]["injection"]
    with pytest.raises(ConfigError, match=r"evaluation\.injection\.fraction is"):
        check_injection(settings)


def test_missing_process_file_is_a_config_error(tmp_path):
    settings = _config_with(process="config/processes/zprime.yaml")
    with pytest.raises(
        ConfigError, match=r"evaluation\.injection\.process is 'config/processes/zpr"
    ):
        check_injection(settings["evaluation"]["injection"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nbase: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="key 'base' names 'nowhere.yaml'"):
        load_process(broken)


def test_injection_closure_sees_a_posterior_that_hides_the_bump():
    """Exact posterior: no bias in the signal region; training-prior one: negative."""
    rng = np.random.default_rng(21)
    n_main, n_inj, n_draws = 4500, 500, 10
    truth = np.concatenate(
        [rng.exponential(200.0, n_main) + 100.0, rng.normal(1300.0, 40.0, n_inj)]
    )
    flag = np.arange(truth.size) >= n_main
    edges = {"m": np.linspace(100.0, 1500.0, 29)}
    exact = np.repeat(truth[:, None], n_draws, axis=1)
    result = injection_closure(
        {"m": truth},
        {"m": exact},
        edges,
        flag,
        region_observables=("m",),
        n_bootstrap=5,
        rng=np.random.default_rng(1),
    )["m"]
    region = result["region_bins"]
    assert region, "the 1300 GeV bins must form a signal region"
    low = edges["m"][region[0]]
    assert 1100.0 < low < 1300.0
    assert result["bias_region"] == pytest.approx(0.0, abs=1e-12)
    assert result["chi2_ndf"] == pytest.approx(0.0, abs=1e-12)
    # Draws from the training prior (no W' in it): the bump disappears.
    prior = rng.exponential(200.0, (truth.size, n_draws)) + 100.0
    hidden = injection_closure(
        {"m": truth},
        {"m": prior},
        edges,
        flag,
        region_observables=("m",),
        n_bootstrap=5,
        rng=np.random.default_rng(1),
    )["m"]
    assert hidden["region_bins"] == region
    truth_hist = np.asarray(hidden["truth"])[region]
    injected = np.asarray(hidden["truth_injected"])[region]
    # Only the ZW part (about the background share of the truth) is left.
    expected = (truth_hist - injected).sum() / truth_hist.sum() - 1.0
    assert hidden["bias_region_integrated"] == pytest.approx(expected, abs=0.1)
    assert hidden["bias_region_integrated"] < -0.5
    # The peak: the bins around 1300 GeV above half the injected maximum.
    peak = hidden["peak_bins"]
    assert set(peak) <= set(region)
    assert all(1200.0 <= edges["m"][b] < 1400.0 for b in peak)
    injected_all = np.asarray(hidden["truth_injected"])
    assert injected_all[peak].sum() >= 0.5 * injected_all.sum()
    assert result["bias_peak_integrated"] == pytest.approx(0.0, abs=1e-12)
    assert hidden["bias_peak_integrated"] < -0.8
    assert hidden["chi2_ndf"] > 10.0


def _injected_posterior(path, rng, *, exact):
    """A posterior file of 900 + 100 events whose injected ones sit at q1_pt ~ 600."""
    n_main, n_inj, n_draws = 900, 100, 20
    names = [f"{o}_{f}" for o in ("q1", "q2", "l1", "l2") for f in ("pt", "eta", "phi")]
    kinds = [n.split("_")[1] for n in names]
    n = n_main + n_inj
    x = np.empty((n, 12))
    x[:, 0::3] = rng.exponential(40.0, (n, 4)) + 30.0
    x[n_main:, 0] = rng.normal(600.0, 20.0, n_inj)
    x[:, 1::3] = rng.normal(0.0, 1.0, (n, 4))
    x[:, 2::3] = rng.uniform(-3.0, 3.0, (n, 4))
    if exact:
        draws = np.repeat(x[:, None], n_draws, axis=1)
    else:  # a posterior that knows only the main process: the bump is gone
        draws = np.repeat(x[:, None], n_draws, axis=1)
        draws[n_main:, :, 0] = rng.exponential(40.0, (n_inj, n_draws)) + 30.0
    detector = x[:, [0, 1, 2, 3, 4, 5]] * (1.0 + rng.normal(0.0, 0.05, (n, 6)))
    np.savez(
        path,
        x_parton=x.astype(np.float32),
        draws=draws.astype(np.float32),
        parton_names=np.array(names),
        parton_kinds=np.array(kinds),
        c_detector=detector.astype(np.float32),
        detector_names=np.array([m.replace("q", "j") for m in names[:6]]),
        is_injected=np.arange(n) >= n_main,
    )


@pytest.mark.parametrize("exact", [True, False])
def test_run_injection_writes_the_bias_of_the_signal_region(tmp_path, exact):
    from cinnflow.closure.injection import run_injection

    posterior = tmp_path / "posterior.npz"
    _injected_posterior(posterior, np.random.default_rng(31), exact=exact)
    metrics_path = tmp_path / "metrics" / "injection.json"
    metrics = run_injection(
        posterior,
        metrics_path=metrics_path,
        plots_dir=tmp_path / "plots",
        region_observables=("q1_pt",),
        plots=("q1_pt",),
        n_bins=30,
        n_bootstrap=5,
        seed=2,
    )
    import json

    written = json.loads(metrics_path.read_text())
    assert written["region"] == metrics["region"]
    assert written["chi2_ndf"] == pytest.approx(metrics["chi2_ndf"])
    assert metrics["n_events"] == 1000 and metrics["n_injected"] == 100
    assert metrics["fraction"] == pytest.approx(0.1)
    region = metrics["region"]["q1_pt"]
    # The region covers the bump: it starts above the main spectrum's bulk and the
    # histogram range reaches the injected events.
    assert 400.0 < region["low_edge"] < 600.0
    assert metrics["bins"]["q1_pt"]["edges"][-1] >= 600.0
    if exact:
        assert region["bias_region_integrated"] == pytest.approx(0.0, abs=1e-9)
        assert metrics["chi2_ndf"]["q1_pt"] == pytest.approx(0.0, abs=1e-9)
    else:
        assert region["bias_region_integrated"] < -0.8
        assert metrics["chi2_ndf"]["q1_pt"] > 2.0
    assert metrics["chi2_ndf"]["l1_eta"] == pytest.approx(0.0, abs=1e-9)
    assert (tmp_path / "plots" / "injection_q1_pt.png").stat().st_size > 10_000
