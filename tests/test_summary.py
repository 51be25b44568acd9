"""The summary table and the verdicts on the bars of issues 2 and 5."""

import json

from cinnflow.summary import summarize

PARTON = ["q1_pt", "q1_eta"]
BARS = {
    "calibration_error": 0.05,
    "chi2_ndf": 2.0,
    "median_abs_deviation": 0.05,
    "peak_shift_gev": 1.0,
}
VALIDATION = {
    "calibration_error": 0.03,
    "coverage_68": [0.66, 0.70],
    "coverage_95": [0.94, 0.96],
    "chi2_ndf": 2.0,
    "multivariate_calibration_error": 0.03,
}


def test_summary_reports_each_miss(tmp_path):
    calibration = {
        "calibration_error": {"q1_pt": 0.02, "q1_eta": 0.01, "m_qq": 0.04},
        "coverage_68": {"q1_pt": 0.68, "q1_eta": 0.64, "m_qq": 0.6},
        "coverage_95": {"q1_pt": 0.95, "q1_eta": 0.95, "m_qq": 0.9},
        "multivariate": {"calibration_error": 0.012, "n_dimensions": 2},
    }
    closure = {
        "chi2_ndf": {"q1_pt": 1.1, "q1_eta": 0.9, "m_qq": 2.5},
        "chi2_ndf_paired": {"q1_pt": 1.5, "q1_eta": 1.2, "m_qq": 4.0},
        "median_abs_deviation": {"q1_pt": 0.01, "q1_eta": 0.01, "m_qq": 0.02},
        "max_abs_deviation": {"q1_pt": 0.05, "q1_eta": 0.04, "m_qq": 0.09},
        "peak": {"m_qq": {"unfolded": 80.6, "truth": 80.4, "shift": 0.2}},
        "baseline": {"chi2_ndf": {"q1_pt": 3.0, "q1_eta": 1.0, "m_qq": 7.5}},
    }
    (tmp_path / "c.json").write_text(json.dumps(calibration))
    (tmp_path / "cl.json").write_text(json.dumps(closure))
    verdict = summarize(
        tmp_path / "c.json",
        tmp_path / "cl.json",
        parton_names=PARTON,
        bars=BARS,
        validation_bars=VALIDATION,
        table_path=tmp_path / "summary.md",
        bars_path=tmp_path / "bars.json",
    )
    assert verdict["all_pass"] is True  # issue-2 bars: parton columns only
    checks = verdict["validation"]
    assert checks["calibration_error"]["failing"] == ["m_qq"]
    # Coverage windows apply to the parton columns: m_qq's 0.6 does not count.
    assert checks["coverage_68"]["failing"] == ["q1_eta"]
    assert checks["coverage_68"]["worst"] == 0.64
    assert checks["coverage_95"]["pass"] is True
    assert checks["chi2_ndf"]["failing"] == ["m_qq"]
    assert checks["multivariate_calibration_error"]["pass"] is True
    assert verdict["validation_pass"] is False
    assert json.loads((tmp_path / "bars.json").read_text()) == verdict
    table = (tmp_path / "summary.md").read_text()
    assert (
        "| m_qq | 0.040 | 0.600 | 0.900 | 2.50 | 4.00 | 0.090 | 0.020 | 7.50 |" in table
    )
    assert "joint (energy-score rank, 2-d) | 0.012" in table
    assert "coverage_68 in [0.66, 0.7]: worst 0.640 (q1_eta) -> FAIL: q1_eta" in table


def test_summary_puts_ibu_beside_the_cinn_under_the_changed_prior(tmp_path):
    calibration = {
        "calibration_error": {"q1_pt": 0.02, "q1_eta": 0.01},
        "coverage_68": {"q1_pt": 0.68, "q1_eta": 0.68},
        "coverage_95": {"q1_pt": 0.95, "q1_eta": 0.95},
    }
    closure = {
        "chi2_ndf": {"q1_pt": 1.1, "q1_eta": 0.9},
        "median_abs_deviation": {"q1_pt": 0.01, "q1_eta": 0.01},
        "peak": {"m_qq": {"unfolded": 80.6, "truth": 80.4, "shift": 0.2}},
    }
    per_obs = {"q1_pt": 1.25, "q1_eta": 0.5}
    prior = {
        "reweighting": {"observable": "q1_pt", "scale_gev": 100.0, "exponent": 1.0},
        "tail_low_edge": 120.0,
        "bias_tail": 0.06,
        "bias_tail_integrated": 0.03,
        "chi2_ndf": per_obs,
        "bias_median": {"q1_pt": 0.012, "q1_eta": -0.001},
        "ibu": {
            "bias_tail": -0.02,
            "bias_tail_integrated": -0.01,
            "chi2_ndf": {"q1_pt": 3.5, "q1_eta": 0.25},
            "bias_median": {"q1_pt": -0.004, "q1_eta": 0.0},
        },
    }
    injection = {
        "n_injected": 100,
        "n_events": 1000,
        "fraction": 0.1,
        "purity": 0.5,
        "chi2_ndf": per_obs,
        "bias_median": {"q1_pt": 0.0, "q1_eta": 0.0},
        "ibu": {"chi2_ndf": per_obs, "bias_median": {"q1_pt": 0.0, "q1_eta": 0.0}},
        "region": {
            "q1_pt": {
                "bins": [3, 4],
                "low_edge": 1200.0,
                "high_edge": 1400.0,
                "bias_region": -0.3,
                "bias_region_integrated": -0.25,
                "ibu_bias_region": 0.1,
                "ibu_bias_region_integrated": 0.05,
            },
        },
    }
    for name, data in (
        ("c", calibration),
        ("cl", closure),
        ("p", prior),
        ("i", injection),
    ):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    summarize(
        tmp_path / "c.json",
        tmp_path / "cl.json",
        parton_names=PARTON,
        bars=BARS,
        table_path=tmp_path / "summary.md",
        bars_path=tmp_path / "bars.json",
        prior_path=tmp_path / "p.json",
        injection_path=tmp_path / "i.json",
    )
    table = (tmp_path / "summary.md").read_text()
    assert "reweighted by (1 + q1_pt / 100 GeV)^1" in table
    assert (
        "cINN bias +6.0 % (median over bins), +3.0 % integrated; IBU -2.0 %, -1.0 %"
        in table
    )
    assert "| q1_pt | 1.25 | 3.50 | +1.2 % | -0.4 % |" in table
    assert "100 of 1000 events (10.0 %)" in table
    assert (
        "q1_pt signal region [1200, 1400] GeV: cINN bias -30.0 % (median over bins), "
        "-25.0 % integrated; IBU +10.0 %, +5.0 %"
    ) in table
