rule prepare:
    input:
        events=event_files(),
        process=config["process"],
    output:
        train="results/prepared/train.npz",
        val="results/prepared/val.npz",
        test="results/prepared/test.npz",
        provenance="results/prepared/provenance.json",
    log:
        "logs/prepare.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        split=config["preparation"]["split"],
        seed=config["seed"],
    resources:
        mem_mb=8000,
        runtime=30,
    script:
        "../scripts/prepare.py"


rule plot_events:
    input:
        event_files(),
    output:
        report(
            directory("results/plots/events"),
            patterns=["{name}.png"],
            category="Events",
        ),
    log:
        "logs/plot_events.log",
    conda:
        "../envs/cinnflow.yaml"
    resources:
        mem_mb=4000,
    script:
        "../scripts/plot_events.py"
