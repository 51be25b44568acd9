rule train:
    input:
        train="results/prepared/train.npz",
        val="results/prepared/val.npz",
    output:
        model=directory("results/model"),
        loss="results/training/loss.csv",
    log:
        "logs/train.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        model=config["model"],
        training=config["training"],
        seed=config["seed"],
        # Kept outside the outputs so that an interrupted training resumes from it.
        checkpoints="results/checkpoints",
    # Capped at --cores on a workstation; the SLURM profile sets its own.
    threads: 8
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    script:
        "../scripts/train.py"


rule plot_training:
    input:
        "results/training/loss.csv",
    output:
        report(
            directory("results/plots/training"),
            patterns=["{name}.png"],
            category="Training",
        ),
    log:
        "logs/plot_training.log",
    conda:
        "../envs/cinnflow.yaml"
    script:
        "../scripts/plot_training.py"
