rule train:
    input:
        train="results/prepared/train.npz",
        val="results/prepared/val.npz",
    output:
        model=directory("results/models/{member}"),
        loss="results/training/loss_{member}.csv",
    log:
        "logs/train/{member}.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        model=config["model"],
        training=config["training"],
        # Member 0 trains with the master seed; member k with seed + 1000 k.
        seed=lambda wildcards: member_seed(config["seed"], wildcards.member),
        # Kept outside the outputs so that an interrupted training resumes from it;
        # one folder per member and configuration (see training_key).
        checkpoints=training_key,
    # Capped at --cores on a workstation; the SLURM profile sets its own.
    threads: 8
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    script:
        "../scripts/train.py"


rule plot_training:
    input:
        "results/training/loss_0.csv",
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
