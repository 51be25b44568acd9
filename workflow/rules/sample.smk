rule sample:
    input:
        models=trained_models(),
        test="results/prepared/test.npz",
        # With a grid: which point's seed ensemble to sample.
        grid=grid_metrics(),
    output:
        "results/posterior/test.npz",
    log:
        "logs/sample.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        sampling=config["sampling"],
        seed=config["seed"] + 7,
        deterministic=config["training"].get("deterministic", True),
    # Capped at --cores on a workstation; the SLURM profile sets its own.
    threads: 8
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../scripts/sample.py"
