rule prior_dependence:
    input:
        posterior="results/posterior/test.npz",
        train="results/prepared/train.npz",
    output:
        metrics="results/metrics/prior.json",
        plots=report(
            directory("results/plots/prior"),
            patterns=["{name}.png"],
            category="Prior dependence",
        ),
    log:
        "logs/prior_dependence.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        derived=PROCESS.get("derived", {}),
        prior=config["evaluation"]["prior"],
        n_bootstrap=config["evaluation"]["n_bootstrap"],
        ibu_iterations=config["evaluation"]["ibu_iterations"],
        seed=config["seed"] + 17,
    resources:
        mem_mb=8000,
    script:
        "../scripts/prior.py"
