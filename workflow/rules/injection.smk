# Injected signal (evaluation.injection): W' events simulated and prepared like the
# main ones, mixed into the test split, unfolded by the trained cINN and by IBU.


if INJECTION:

    rule simulate_injection:
        input:
            card=config["events"]["detector_card"],
            process=injection_files(),
        output:
            "results/injection/events/chunk_{chunk}.root",
        log:
            "logs/simulate_injection/chunk_{chunk}.log",
        conda:
            "../envs/cinnflow.yaml"
        params:
            events=injection_events(),
            settings=INJECTION_PROCESS.get("pythia_settings", []),
            matching=None,
            n_events=injection_chunk_size,
            offset=injection_chunk_offset,
            seed=injection_seed,
        threads: 1
        resources:
            mem_mb=2000,
            runtime=60,
        script:
            "../scripts/simulate.py"

    rule prepare_injection:
        input:
            events=injection_chunks(),
            process=injection_files(),
        output:
            sample="results/injection/injected.npz",
            summary="results/injection/injected.json",
        log:
            "logs/prepare_injection.log",
        conda:
            "../envs/cinnflow.yaml"
        resources:
            mem_mb=4000,
        script:
            "../scripts/prepare_injection.py"

    rule mix_injection:
        input:
            test="results/prepared/test.npz",
            injected="results/injection/injected.npz",
        output:
            "results/injection/data.npz",
        log:
            "logs/mix_injection.log",
        conda:
            "../envs/cinnflow.yaml"
        params:
            fraction=INJECTION["fraction"],
            seed=config["seed"] + 19,
        script:
            "../scripts/mix_injection.py"

    rule sample_injection:
        input:
            models=trained_models(),
            test="results/injection/data.npz",
            grid=grid_metrics(),
        output:
            "results/injection/posterior.npz",
        log:
            "logs/sample_injection.log",
        conda:
            "../envs/cinnflow.yaml"
        params:
            sampling=config["sampling"],
            seed=config["seed"] + 23,
            deterministic=config["training"].get("deterministic", True),
        threads: 8
        resources:
            mem_mb=8000,
            runtime=120,
        script:
            "../scripts/sample.py"

    rule injection:
        input:
            posterior="results/injection/posterior.npz",
            train="results/prepared/train.npz",
        output:
            metrics="results/metrics/injection.json",
            plots=report(
                directory("results/plots/injection"),
                patterns=["{name}.png"],
                category="Injected W'",
            ),
        log:
            "logs/injection.log",
        conda:
            "../envs/cinnflow.yaml"
        params:
            derived=PROCESS.get("derived", {}),
            injection=INJECTION,
            label=INJECTION_PROCESS["name"],
            n_bootstrap=config["evaluation"]["n_bootstrap"],
            ibu_iterations=config["evaluation"]["ibu_iterations"],
            seed=config["seed"] + 29,
        resources:
            mem_mb=8000,
        script:
            "../scripts/injection.py"
