"""Benchmark the cINN of config/paper.yaml against the same network in FrEIA 0.2.

One run (``make bench-flows``):

1. makes a fixed synthetic ZW dataset (``flow_data.py``, seeded) and writes it to a
   temporary ``.npz``;
2. measures the machine's fp32 matmul peak (a loop of large ``tf.matmul``) and,
   for the bfloat16 lever, the same loop in bfloat16;
3. runs each configuration in its own subprocess (own peak RSS, same threads):
   the cinnflow default, the levers switched off one at a time, larger batches,
   and the FrEIA peer (``freia_peer.py`` under ``.venv-freia/bin/python``);
4. writes ``benchmarks/results/flows.md`` and ``flows.json``.

Each worker trains for ``--warmup`` steps (tracing, XLA compilation), then times
``--steps`` steps; then times the log-likelihood of the validation set and the
posterior sampling of ``--sample-events`` events x ``--draws`` draws, each after
one untimed warm-up call. Training FLOPs are counted from the dense layers
(forward 2 * in * out per event and layer, training 3x forward).

Usage:
    .venv/bin/python benchmarks/bench_flows.py [--steps 60] [--threads 2]
"""

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_data import (  # noqa: E402
    DETECTOR_KINDS,
    PARTON_KINDS,
    PARTON_NAMES,
    make_dataset,
)
from timing import best_of  # noqa: E402

logger = logging.getLogger("bench_flows")

SEED = 20200612
# (name, overrides of the default worker options); the first is the default.
CONFIGS = [
    ("cinnflow default", {}),
    ("no XLA", {"jit": False}),
    ("no fused condition", {"fuse": False}),
    ("plain TFP chain (no XLA, unfused)", {"jit": False, "fuse": False}),
    ("batch 2048", {"batch_size": 2048}),
]


def _model_cfg():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    return cfg["model"], cfg["training"]


def dense_flops_per_event(model_cfg, n_parton, n_features):
    """Forward matmul FLOPs per event (2 * fan_in * fan_out per dense layer)."""

    def mlp(n_in, hidden, n_out):
        widths = [n_in, *hidden, n_out]
        return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))

    c = model_cfg["condition_dim"]
    d1 = n_parton // 2
    d2 = n_parton - d1
    condition = mlp(n_features, model_cfg["condition_hidden"], c)
    hidden = model_cfg["subnet_hidden"]
    block = mlp(d2 + c, hidden, 2 * d1) + mlp(d1 + c, hidden, 2 * d2)
    return condition + model_cfg["n_blocks"] * block


# ----------------------------------------------------------------- TF worker


def _set_tf_threads(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


# (m, k, n) of the matmul-peak loops: a large square one and the shapes of the
# paper network at batch 512 (subnet first layer, condition network).
PEAK_SHAPES = ((2048, 2048, 2048), (512, 262, 256), (512, 1024, 1024))


def _peak_worker(args):
    """fp32 matmul rate per shape (the peak is the largest), bf16 on the square."""
    tf = _set_tf_threads(args.threads)

    def rate(m, k, n, dtype):
        a = tf.cast(tf.random.stateless_normal([m, k], seed=[1, 2]), dtype)
        b = tf.cast(tf.random.stateless_normal([k, n], seed=[3, 4]), dtype)

        @tf.function
        def loop(a, b, reps):
            acc = tf.zeros([m, n], a.dtype)
            for _ in tf.range(reps):
                acc = acc + tf.linalg.matmul(a, b)
            return acc[0, 0]

        # About 2 s of fp32 work per shape at 40 GFLOP/s.
        reps = max(3, int(8e10 / (2.0 * m * k * n)))
        if dtype != tf.float32:
            reps = max(3, reps // 4)
        loop(a, b, tf.constant(1)).numpy()
        start = time.perf_counter()
        loop(a, b, tf.constant(reps)).numpy()
        return 2.0 * m * k * n * reps / (time.perf_counter() - start)

    per_shape = {"x".join(map(str, s)): rate(*s, tf.float32) for s in PEAK_SHAPES}
    return {
        "float32": max(per_shape.values()),
        "float32_per_shape": per_shape,
        "bfloat16": rate(*PEAK_SHAPES[0], tf.bfloat16),
        "float32_square": per_shape["x".join(map(str, PEAK_SHAPES[0]))],
    }


def _tf_worker(args):
    tf = _set_tf_threads(args.threads)
    import tf_keras

    from cinnflow.flows import ConditionalINN
    from cinnflow.training.trainer import _check_cfg, make_train_step

    data = np.load(args.data)
    x_train, c_train = data["x_train"], data["c_train"]
    x_val, c_val = data["x_val"], data["c_val"]
    model_cfg, _ = _model_cfg()
    # As ConditionalINN.from_config(model_cfg, ...), plus the speed options.
    model = ConditionalINN(
        PARTON_KINDS,
        DETECTOR_KINDS,
        seed=SEED,
        fuse_condition=args.fuse,
        jit_compile=args.jit,
        **model_cfg,
    )
    model.adapt(x_train, c_train)
    variables = model.trainable_variables
    n_weights = sum(int(np.prod(v.shape)) for v in variables)
    cfg = _check_cfg({"jit_compile": args.jit, "batch_size": args.batch_size})
    optimizer = tf_keras.optimizers.Adam(
        learning_rate=args.learning_rate, global_clipnorm=float(cfg["clip_norm"])
    )
    optimizer.build(variables)
    step = make_train_step(model, optimizer, cfg, seed=SEED)
    rng = np.random.default_rng(SEED)
    batch = args.batch_size

    def run(n_steps):
        for _ in range(n_steps):
            idx = rng.integers(0, len(x_train), batch)
            nll, _ = step(x_train[idx], c_train[idx])
        return float(nll)

    start = time.perf_counter()
    run(args.warmup)
    warmup_s = time.perf_counter() - start
    # Best of ``repeats`` rounds: the rate least disturbed by other processes.
    train_s, last_nll = best_of(lambda: run(args.steps), args.repeats)

    val_step = tf.function(
        lambda x, c: tf.reduce_sum(model.log_prob(x, c)),
        input_signature=[
            tf.TensorSpec([None, x_val.shape[1]], tf.float32),
            tf.TensorSpec([None, c_val.shape[1]], tf.float32),
        ],
        jit_compile=args.jit,
    )
    chunk = args.eval_batch

    def log_likelihood():
        total = 0.0
        for i in range(0, len(x_val), chunk):
            total += float(val_step(x_val[i : i + chunk], c_val[i : i + chunk]))
        return total / len(x_val)

    log_likelihood()
    ll_s, mean_ll = best_of(log_likelihood, args.repeats)

    c_sample = c_val[: args.sample_events]
    model.sample(c_sample, args.draws, seed=1)
    sample_s, draws = best_of(
        lambda: model.sample(c_sample, args.draws, seed=2), args.repeats
    )
    return {
        "framework": "cinnflow (TFP)",
        "n_weights": n_weights,
        "batch_size": batch,
        "warmup_s": warmup_s,
        "train_events_per_s": args.steps * batch / train_s,
        "last_train_nll": last_nll,
        "val_mean_log_likelihood": mean_ll,
        "loglik_events_per_s": len(x_val) / ll_s,
        "draws_per_s": draws.shape[0] * draws.shape[1] / sample_s,
        "finite_draws": float(np.isfinite(draws).all(axis=-1).mean()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


# ---------------------------------------------------------------- orchestration


def _worker_cmd(python, script, args, data, out, extra):
    cmd = [
        str(python),
        str(script),
        "--worker-out",
        str(out),
        "--data",
        str(data),
        "--threads",
        str(args.threads),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--sample-events",
        str(args.sample_events),
        "--draws",
        str(args.draws),
        "--eval-batch",
        str(args.eval_batch),
        "--learning-rate",
        str(args.learning_rate),
    ]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def _run_worker(cmd, out, env):
    logger.info("running %s", " ".join(cmd[:2] + cmd[-6:]))
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        msg = f"worker {cmd[1]} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    result = json.loads(Path(out).read_text())
    result["wall_s"] = time.perf_counter() - start
    # Other work on the machine shows here: the load should stay near the threads.
    result["load_avg_1min_after"] = os.getloadavg()[0]
    return result


def _ratio(a, b):
    return a / b if b else float("nan")


def _table(results, freia, peak, flops_train, model_info, threads):
    rows = [
        "| configuration | batch | train events/s | posterior draws/s | "
        "log-lik events/s | peak RSS (MB) | val log-lik | train GFLOP/s "
        "(% of fp32 peak) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in [*results, ("FrEIA 0.2 (PyTorch)", freia)]:
        gflops = r["train_events_per_s"] * flops_train / 1e9
        rows.append(
            f"| {name} | {r['batch_size']} "
            f"| {r['train_events_per_s']:,.0f} "
            f"({_ratio(r['train_events_per_s'], freia['train_events_per_s']):.2f}x) "
            f"| {r['draws_per_s']:,.0f} "
            f"({_ratio(r['draws_per_s'], freia['draws_per_s']):.2f}x) "
            f"| {r['loglik_events_per_s']:,.0f} "
            f"({_ratio(r['loglik_events_per_s'], freia['loglik_events_per_s']):.2f}x) "
            f"| {r['peak_rss_mb']:,.0f} "
            f"({_ratio(r['peak_rss_mb'], freia['peak_rss_mb']):.2f}x) "
            f"| {r['val_mean_log_likelihood']:.2f} "
            f"| {gflops:.1f} ({100 * gflops * 1e9 / peak['float32']:.0f} %) |"
        )
    header = [
        "# cINN benchmark: cinnflow (TFP) against FrEIA 0.2 (PyTorch CPU)",
        "",
        f"Network of config/paper.yaml: {model_info}. Ratios in brackets are "
        "against FrEIA at batch "
        f"{freia['batch_size']}; both frameworks use {threads} "
        "intra-op threads and 1 inter-op thread, the same data and the same "
        "optimiser (Adam, L2 on the kernels, gradient clip).",
        "",
        "Measured fp32 matmul peak (the fastest of the (m, k, n) loops "
        + ", ".join(f"{k}: {v / 1e9:.1f}" for k, v in peak["float32_per_shape"].items())
        + f" GFLOP/s): {peak['float32'] / 1e9:.1f} GFLOP/s; bfloat16 on the "
        f"square: {peak['bfloat16'] / 1e9:.1f} GFLOP/s "
        f"({peak['bfloat16'] / peak['float32_square']:.2f}x fp32). Training FLOPs: "
        f"{flops_train / 1e6:.2f} MFLOP per event (dense layers, 3x forward); "
        "twice FrEIA's training rate would be "
        f"{2 * freia['train_events_per_s'] * flops_train / 1e9:.1f} GFLOP/s, "
        f"{200 * freia['train_events_per_s'] * flops_train / peak['float32']:.0f} %"
        " of that peak. "
        "1-minute load average after each worker: "
        + ", ".join(
            f"{name} {r['load_avg_1min_after']:.1f}"
            for name, r in [*results, ("FrEIA", freia)]
        )
        + ".",
        "",
    ]
    return header + rows


def main():
    """Parse the arguments, run the workers and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed rounds; the fastest counts"
    )
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=8e-4)
    parser.add_argument("--n-train", type=int, default=100_000)
    parser.add_argument("--n-val", type=int, default=20_000)
    parser.add_argument("--eval-batch", type=int, default=5000)
    parser.add_argument("--sample-events", type=int, default=500)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--jit", type=lambda s: s == "True", default=True)
    parser.add_argument("--fuse", type=lambda s: s == "True", default=True)
    parser.add_argument("--freia-python", default=str(ROOT / ".venv-freia/bin/python"))
    parser.add_argument("--levers", type=lambda s: s == "True", default=True)
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--data")
    parser.add_argument("--worker-out")
    parser.add_argument("--peak-worker", action="store_true")
    args = parser.parse_args()
    if args.worker_out:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        result = _peak_worker(args) if args.peak_worker else _tf_worker(args)
        Path(args.worker_out).write_text(json.dumps(result))
        return

    from cinnflow.logs import setup_logging

    setup_logging(None)
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": str(args.threads),
    }
    model_cfg, _ = _model_cfg()
    n_features = sum(3 if k == "phi" else 1 for k in DETECTOR_KINDS)
    flops_train = 3 * dense_flops_per_event(model_cfg, len(PARTON_KINDS), n_features)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        x, c = make_dataset(args.n_train + args.n_val, seed=SEED)
        data = tmp / "data.npz"
        np.savez(
            data,
            x_train=x[: args.n_train],
            c_train=c[: args.n_train],
            x_val=x[args.n_train :],
            c_val=c[args.n_train :],
            parton_names=np.asarray(PARTON_NAMES),
        )
        script = Path(__file__).resolve()
        out = tmp / "peak.json"
        peak = _run_worker(
            [
                sys.executable,
                str(script),
                "--worker-out",
                str(out),
                "--threads",
                str(args.threads),
                "--peak-worker",
            ],
            out,
            env,
        )
        logger.info(
            "fp32 matmul GFLOP/s per (m, k, n): %s",
            {k: round(v / 1e9, 1) for k, v in peak["float32_per_shape"].items()},
        )
        freia_out = tmp / "freia.json"
        freia = _run_worker(
            _worker_cmd(
                args.freia_python,
                script.parent / "freia_peer.py",
                args,
                data,
                freia_out,
                {"batch_size": args.batch_size},
            ),
            freia_out,
            env,
        )
        logger.info("FrEIA: %s", freia)
        configs = CONFIGS if args.levers else CONFIGS[:1]
        results = []
        for i, (name, overrides) in enumerate(configs):
            options = {
                "batch_size": args.batch_size,
                "jit": args.jit,
                "fuse": args.fuse,
            }
            options.update(overrides)
            # Larger batches: the same number of timed events.
            options["steps"] = max(
                1, args.steps * args.batch_size // options["batch_size"]
            )
            out = tmp / f"tf_{i}.json"
            result = _run_worker(
                _worker_cmd(sys.executable, script, args, data, out, options), out, env
            )
            result["options"] = options
            logger.info("%s: %s", name, result)
            results.append((name, result))
    n_weights = results[0][1]["n_weights"]
    info = (
        f"{model_cfg['n_blocks']} coupling blocks (each transforms both halves), "
        f"subnets {model_cfg['subnet_hidden']} hidden, condition network "
        f"{model_cfg['condition_hidden']} -> {model_cfg['condition_dim']}, "
        f"{len(PARTON_KINDS)} parton and {len(DETECTOR_KINDS)} detector columns, "
        f"{n_weights:,} trainable weights (FrEIA: {freia['n_weights']:,}); "
        f"{args.steps} timed training steps after {args.warmup} warm-up steps, "
        f"log-likelihood of {args.n_val:,} validation events, "
        f"{args.sample_events} events x {args.draws} posterior draws; each rate "
        f"is the fastest of {args.repeats} timed rounds"
    )
    lines = _table(results, freia, peak, flops_train, info, args.threads)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine_peak_flops": peak,
        "train_flops_per_event": flops_train,
        "threads": args.threads,
        "freia": freia,
        "cinnflow": {name: r for name, r in results},
        "args": {
            k: v for k, v in vars(args).items() if k not in ("data", "worker_out")
        },
    }
    from cinnflow.io.atomic import atomic_path

    with atomic_path(out_dir / "flows.md") as path:
        path.write_text("\n".join(lines) + "\n")
    with atomic_path(out_dir / "flows.json") as path:
        path.write_text(json.dumps(payload, indent=1))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
