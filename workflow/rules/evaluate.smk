rule calibrate:
    input:
        "results/posterior/test.npz",
    output:
        metrics="results/metrics/calibration.json",
        curves="results/plots/calibration_curves.csv",
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
        seed=config["seed"] + 11,
    resources:
        mem_mb=8000,
    script:
        "../scripts/calibrate.py"


rule closure:
    input:
        "results/posterior/test.npz",
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
    resources:
        mem_mb=8000,
    script:
        "../scripts/closure.py"


rule summarize:
    input:
        calibration="results/metrics/calibration.json",
        closure="results/metrics/closure.json",
        test="results/prepared/test.npz",
    output:
        table=report("results/summary.md", category="Summary"),
        bars="results/metrics/bars.json",
    log:
        "logs/summarize.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        bars=config["evaluation"]["bars"],
    script:
        "../scripts/summarize.py"
