"""Cost and effect of TensorFlow's op determinism on the default cINN training (CPU).

Each configuration (op determinism on/off, XLA on/off, intra-op threads) runs in its
own fresh process: the cINN of ``config/config.yaml`` on the fixed synthetic
dataset of ``flow_data.py``, ``--warmup`` untimed training steps (tracing, XLA
compilation) and then ``--steps`` timed steps with the real training step
(``make_train_step``) and the real shuffle order. The worker reports the training
events/s and the SHA-256 of the final weights, so the table shows both the speed
cost and whether the switch changes the numbers. The configurations run
``--repeats`` times, interleaved, so that a load change on the machine hits all
of them alike.

Writes ``benchmarks/results/determinism.md`` and ``determinism.json``.

Usage:
    .venv/bin/python benchmarks/bench_determinism.py [--steps 150] [--repeats 2]
"""

import argparse
import hashlib
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_data import DETECTOR_KINDS, PARTON_KINDS, make_dataset  # noqa: E402

from cinnflow.io.atomic import atomic_path  # noqa: E402

logger = logging.getLogger("bench_determinism")

#: Seed of the dataset, the weights and the shuffle order.
SEED = 20200612
#: (op determinism, XLA, intra-op threads) of each configuration.
CONFIGS = [
    (False, True, 2),
    (True, True, 2),
    (False, False, 2),
    (True, False, 2),
    (True, True, 1),
]


def _worker(args):
    import tensorflow as tf
    import tf_keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from cinnflow.flows import ConditionalINN
    from cinnflow.training import enable_determinism
    from cinnflow.training.trainer import _batches, _check_cfg, make_train_step

    if args.deterministic:
        enable_determinism(SEED)
    data = np.load(args.data)
    x_train, c_train = data["x_train"], data["c_train"]
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    model = ConditionalINN.from_config(
        config["model"], PARTON_KINDS, DETECTOR_KINDS, seed=SEED
    )
    model.adapt(x_train, c_train)
    training = dict(config["training"], jit_compile=args.jit)
    training.pop("deterministic", None)
    cfg = _check_cfg(training)
    optimizer = tf_keras.optimizers.Adam(
        learning_rate=float(cfg["learning_rate"]),
        global_clipnorm=float(cfg["clip_norm"]),
    )
    optimizer.build(model.trainable_variables)
    step = make_train_step(model, optimizer, cfg, seed=SEED)
    batches = _batches(len(x_train), int(cfg["batch_size"]), SEED, 0)
    if len(batches) < args.warmup + args.steps:
        msg = f"{len(batches)} batches < warmup + steps {args.warmup + args.steps}"
        raise ValueError(msg)
    for idx in batches[: args.warmup]:
        step(x_train[idx], c_train[idx])
    start = time.perf_counter()
    for idx in batches[args.warmup : args.warmup + args.steps]:
        nll, _ = step(x_train[idx], c_train[idx])
    float(nll)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256()
    for variable in model.trainable_variables:
        digest.update(variable.numpy().tobytes())
    return {
        "events_per_s": args.steps * int(cfg["batch_size"]) / seconds,
        "weights_sha256": digest.hexdigest()[:16],
        "last_nll": float(nll),
    }


def _run(data, deterministic, jit, threads, args):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            __file__,
            "--worker",
            "--data",
            str(data),
            "--out",
            out.name,
            "--threads",
            str(threads),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
        ]
        command += ["--deterministic"] if deterministic else []
        command += ["--jit"] if jit else []
        subprocess.run(command, check=True, capture_output=True)
        return json.loads(Path(out.name).read_text())


def _table(results, args):
    lines = [
        "# Op determinism on CPU: training speed and weights",
        "",
        f"Default cINN of config/config.yaml, batch 1024, {args.steps} timed steps "
        f"after {args.warmup} warm-up steps, {args.repeats} interleaved repeats "
        "(median events/s); every run in a fresh process.",
        "",
        "| op determinism | XLA | threads | events/s (median) | runs | weights hash |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, runs in results.items():
        rate = statistics.median(r["events_per_s"] for r in runs)
        hashes = " / ".join(sorted({r["weights_sha256"] for r in runs}))
        each = ", ".join(f"{r['events_per_s']:,.0f}" for r in runs)
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {rate:,.0f} | {each} | {hashes} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--data")
    parser.add_argument("--out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    if args.worker:
        result = _worker(args)
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(result))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {config: [] for config in CONFIGS}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.npz"
        x, c = make_dataset(args.events, SEED)
        np.savez(data, x_train=x, c_train=c)
        for repeat in range(args.repeats):
            for config in CONFIGS:
                result = _run(data, *config, args)
                logger.info("repeat %d %s: %s", repeat, config, result)
                results[config].append(result)
    out_dir = ROOT / "benchmarks" / "results"
    with atomic_path(out_dir / "determinism.md") as tmp:
        Path(tmp).write_text(_table(results, args))
    with atomic_path(out_dir / "determinism.json") as tmp:
        Path(tmp).write_text(
            json.dumps(
                [{"config": list(k), "runs": v} for k, v in results.items()], indent=2
            )
        )
    logger.info("%s", _table(results, args))


if __name__ == "__main__":
    main()
