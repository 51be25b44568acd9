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
        seed=training_seed,
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


# One job per grid point (ensemble.grid) and seed member; only with a grid.
use rule train as train_grid with:
    output:
        model=directory("results/models/{point}/{member}"),
        loss="results/training/{point}/loss_{member}.csv",
    log:
        "logs/train/{point}/{member}.log",
    params:
        model=point_section("model"),
        training=point_section("training"),
        seed=training_seed,
        checkpoints=training_key,
        point="{point}",


# The grid point with the lowest validation loss (mean over its seed members).
rule select_grid:
    input:
        grid_loss_files(),
    output:
        "results/metrics/grid.json",
    log:
        "logs/select_grid.log",
    localrule: True
    conda:
        "../envs/cinnflow.yaml"
    params:
        points=GRID_POINTS,
        loss_csvs=grid_loss_csvs(),
    script:
        "../scripts/select_grid.py"


rule plot_training:
    input:
        losses=training_losses(),
        grid=grid_metrics(),
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
