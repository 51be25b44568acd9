rule sample:
    input:
        models=expand("results/models/{member}", member=ensemble_members()),
        test="results/prepared/test.npz",
    output:
        "results/posterior/test.npz",
    log:
        "logs/sample.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        sampling=config["sampling"],
        seed=config["seed"] + 7,
    # Capped at --cores on a workstation; the SLURM profile sets its own.
    threads: 8
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/sample.py"
