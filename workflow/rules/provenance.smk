rule provenance:
    input:
        models=expand("results/models/{member}", member=ensemble_members()),
        posterior="results/posterior/test.npz",
        metrics=[
            "results/metrics/calibration.json",
            "results/metrics/closure.json",
            "results/metrics/bars.json",
        ],
    output:
        "results/provenance.json",
    log:
        "logs/provenance.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        config=config,
    script:
        "../scripts/provenance.py"
