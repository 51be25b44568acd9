rule simulate:
    input:
        card=config["events"]["detector_card"],
        process=config["process"],
        lhe=lhe_input(),
    output:
        "results/events/chunk_{chunk}.root",
    log:
        "logs/simulate/chunk_{chunk}.log",
    conda:
        "../envs/cinnflow.yaml"
    params:
        events=config["events"],
        settings=PROCESS.get("pythia_settings", []),
        matching=PROCESS.get("matching"),
        n_events=chunk_size,
        offset=chunk_offset,
        seed=lambda wildcards: config["seed"] + 1 + int(wildcards.chunk),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    script:
        "../scripts/simulate.py"
