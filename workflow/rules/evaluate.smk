rule calibrate:
    input:
        "results/posterior/test.npz",
    output:
        metrics="results/metrics/calibration.json",
        slices="results/metrics/calibration_slices.json",
        curves="results/plots/calibration_curves.csv",
        slices_csv="results/plots/calibration_slices.csv",
        plots=report(
            directory("results/plots/calibration"),
            patterns=["{name}.png"],
            category="Calibration",
        ),
    log:
        "logs/calibrate.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        derived=PROCESS.get("derived", {}),
        n_levels=config["evaluation"]["n_levels"],
        n_slices=config["evaluation"]["n_slices"],
        jets=PROCESS["detector"]["jets"],
        seed=config["seed"] + 11,
    resources:
        mem_mb=8000,
    script:
        "../scripts/calibrate.py"


rule closure:
    input:
        posterior="results/posterior/test.npz",
        train="results/prepared/train.npz",
    output:
        metrics="results/metrics/closure.json",
        histograms="results/plots/closure_histograms.csv",
        plots=report(
            directory("results/plots/closure"),
            patterns=["{name}.png"],
            category="Closure",
        ),
    log:
        "logs/closure.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        derived=PROCESS.get("derived", {}),
        n_bootstrap=config["evaluation"]["n_bootstrap"],
        ibu_iterations=config["evaluation"]["ibu_iterations"],
        seed=config["seed"] + 13,
    resources:
        mem_mb=8000,
    script:
        "../scripts/closure.py"


rule summarize:
    input:
        calibration="results/metrics/calibration.json",
        closure="results/metrics/closure.json",
        test="results/prepared/test.npz",
        prior="results/metrics/prior.json",
        injection=injection_targets()[:1],
    output:
        table=report("results/summary.md", category="Summary"),
        bars="results/metrics/bars.json",
    log:
        "logs/summarize.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        bars=config["evaluation"]["bars"],
        validation_bars=config["evaluation"]["validation_bars"],
    script:
        "../scripts/summarize.py"
