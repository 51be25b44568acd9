"""The FrEIA 0.2 (PyTorch CPU) peer of ``bench_flows.py``: the same cINN, timed alike.

Run by ``bench_flows.py`` with ``.venv-freia/bin/python`` (torch 2.13.0 CPU,
FrEIA 0.2, numpy; no TensorFlow, no cinnflow). Builds the network of
config/paper.yaml the way FrEIA users write it: ``GLOWCouplingBlock`` (both
halves, atan soft clamp) and ``PermuteRandom`` between blocks, conditioned on a
condition network, after the same fixed preprocessing as cinnflow (log pT,
phi relative to the detector phi mapped by atanh(phi / pi), standardisation, the
least-squares condition regression and its residual scale, a learned global
affine). The log-likelihood includes the Jacobian of the preprocessing, so it is
in physics units like cinnflow's. Same optimiser: Adam, L2 1e-5 on the weight
matrices, global gradient-norm clip 10.

FrEIA's direction: ``inn(x)`` maps data to latent, ``inn(z, rev=True)`` samples.
"""

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_data import DETECTOR_KINDS, PARTON_KINDS  # noqa: E402
from timing import best_of  # noqa: E402

SEED = 20200612
PHI_EDGE = 1e-6
# config/paper.yaml's model section, read without PyYAML (not in this venv).
ROOT = Path(__file__).resolve().parents[1]


def _paper_model():
    """The model section of config/paper.yaml (flat keys and int lists only)."""
    section, cfg = False, {}
    for line in (ROOT / "config" / "paper.yaml").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            section = line.startswith("model:")
            continue
        if section:
            key, value = (p.strip() for p in line.split(":", 1))
            value = value.split("#")[0].strip()
            if value.startswith("["):
                cfg[key] = [int(v) for v in value.strip("[]").split(",") if v.strip()]
            elif value in ("true", "false"):
                cfg[key] = value == "true"
            else:
                cfg[key] = float(value) if "." in value else int(value)
    return cfg


def _features(c):
    """Condition features as in cinnflow.flows.preprocessing.condition_features."""
    cols = []
    for i, kind in enumerate(DETECTOR_KINDS):
        col = c[:, i : i + 1]
        if kind == "pt":
            cols.append(np.log(np.maximum(col, np.finfo(np.float32).tiny)))
        elif kind == "mass":
            cols.append(np.log(np.maximum(col, 0.0) + 1.0))
        elif kind == "phi":
            u = np.clip(col / np.pi, -1 + PHI_EDGE, 1 - PHI_EDGE)
            cols += [np.cos(col), np.sin(col), np.arctanh(u)]
        else:
            cols.append(col)
    return np.concatenate(cols, axis=1)


_LOG = np.array([k in ("pt", "mass") for k in PARTON_KINDS])
_PHI = np.array([k == "phi" for k in PARTON_KINDS])
_DET_PHI = [i for i, k in enumerate(DETECTOR_KINDS) if k == "phi"]


class Preprocessing:
    """Fixed maps from physics units to the flow's input, with their log-Jacobian."""

    def __init__(self, x, c):
        y = self._columns(torch.from_numpy(x), torch.from_numpy(c))[0].double().numpy()
        self.mean, self.std = y.mean(0), np.maximum(y.std(0), 1e-6)
        u = (y - self.mean) / self.std
        raw = _features(c).astype(np.float64)
        self.f_mean, self.f_std = raw.mean(0), np.maximum(raw.std(0), 1e-6)
        f = (raw - self.f_mean) / self.f_std
        design = np.concatenate([f, np.ones((len(f), 1))], axis=1)
        coef, *_ = np.linalg.lstsq(design, u, rcond=None)
        self.weight, self.bias = coef[:-1], coef[-1]
        self.res_std = np.maximum((u - design @ coef).std(0), 1e-6)
        t = {k: torch.tensor(v, dtype=torch.float32) for k, v in vars(self).items()}
        self.t = t

    @staticmethod
    def _columns(x, c):
        ref = torch.zeros_like(x)
        ref[:, torch.from_numpy(_PHI)] = c[:, _DET_PHI]
        phi = x - ref
        phi = phi - 2 * math.pi * torch.floor((phi + math.pi) / (2 * math.pi))
        u = torch.clamp(phi / math.pi, -1 + PHI_EDGE, 1 - PHI_EDGE)
        log_mask, phi_mask = torch.from_numpy(_LOG), torch.from_numpy(_PHI)
        safe = torch.where(log_mask, x, torch.ones_like(x))
        y = torch.where(log_mask, torch.log(safe), x)
        y = torch.where(phi_mask, torch.atanh(u), y)
        ldj = torch.where(log_mask, -torch.log(safe), torch.zeros_like(x))
        ldj = ldj + torch.where(
            phi_mask, -math.log(math.pi) - torch.log1p(-u * u), torch.zeros_like(x)
        )
        return y, ldj.sum(1)

    def features(self, c_np):
        return torch.from_numpy(
            ((_features(c_np) - self.f_mean) / self.f_std).astype(np.float32)
        )

    def to_residual(self, x, c, f):
        """x (physics) -> residual r and log|det d r / d x|."""
        t = self.t
        y, ldj = self._columns(x, c)
        u = (y - t["mean"]) / t["std"]
        r = (u - f @ t["weight"] - t["bias"]) / t["res_std"]
        ldj = ldj - torch.log(t["std"]).sum() - torch.log(t["res_std"]).sum()
        return r, ldj

    def from_residual(self, r, c, f):
        t = self.t
        u = r * t["res_std"] + f @ t["weight"] + t["bias"]
        y = u * t["std"] + t["mean"]
        log_mask, phi_mask = torch.from_numpy(_LOG), torch.from_numpy(_PHI)
        x = torch.where(log_mask, torch.exp(torch.where(log_mask, y, 0 * y)), y)
        ref = torch.zeros_like(y)
        ref[:, phi_mask] = c[:, _DET_PHI]
        phi = math.pi * torch.tanh(y) + ref
        phi = phi - 2 * math.pi * torch.floor((phi + math.pi) / (2 * math.pi))
        return torch.where(phi_mask, phi, x)


def _mlp(n_in, hidden, n_out, zero_last=False):
    widths = [n_in, *hidden]
    layers = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    last = nn.Linear(widths[-1], n_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class Peer(nn.Module):
    """Condition network + learned global affine + FrEIA GLOW coupling chain."""

    def __init__(self, cfg, dim, n_features):
        super().__init__()
        self.condition = _mlp(n_features, cfg["condition_hidden"], cfg["condition_dim"])
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.shift = nn.Parameter(torch.zeros(dim))
        cond = Ff.ConditionNode(cfg["condition_dim"])
        nodes = [Ff.InputNode(dim, name="x")]
        hidden = cfg["subnet_hidden"]
        for i in range(cfg["n_blocks"]):
            nodes.append(
                Ff.Node(
                    nodes[-1],
                    Fm.GLOWCouplingBlock,
                    {
                        "subnet_constructor": lambda a, b: _mlp(a, hidden, b, True),
                        "clamp": cfg["clamp"],
                        "clamp_activation": "ATAN",
                    },
                    conditions=cond,
                )
            )
            if i < cfg["n_blocks"] - 1:
                nodes.append(Ff.Node(nodes[-1], Fm.PermuteRandom, {"seed": i}))
        nodes.append(Ff.OutputNode(nodes[-1]))
        self.inn = Ff.GraphINN([*nodes, cond], verbose=False)
        self.dim = dim

    def log_prob(self, x, c, f, pre):
        r, ldj_pre = pre.to_residual(x, c, f)
        a = (r - self.shift) * torch.exp(-self.log_scale)
        z, ldj = self.inn(a, c=[self.condition(f)])
        log_n = -0.5 * (z * z).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)
        return log_n + ldj + ldj_pre - self.log_scale.sum()

    def sample(self, c, f, n_draws, pre, generator):
        embedding = self.condition(f)  # once per event, like cinnflow
        z = torch.randn(len(c) * n_draws, self.dim, generator=generator)
        a, _ = self.inn(z, c=[embedding.repeat_interleave(n_draws, 0)], rev=True)
        r = a * torch.exp(self.log_scale) + self.shift
        rep_c = c.repeat_interleave(n_draws, 0)
        return pre.from_residual(r, rep_c, f.repeat_interleave(n_draws, 0))


def main():
    parser = argparse.ArgumentParser()
    for key, kind in [
        ("--worker-out", str),
        ("--data", str),
        ("--threads", int),
        ("--steps", int),
        ("--warmup", int),
        ("--repeats", int),
        ("--sample-events", int),
        ("--draws", int),
        ("--eval-batch", int),
        ("--learning-rate", float),
        ("--batch-size", int),
    ]:
        parser.add_argument(key, type=kind, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(SEED)
    data = np.load(args.data)
    x_train, c_train = data["x_train"], data["c_train"]
    x_val, c_val = data["x_val"], data["c_val"]
    pre = Preprocessing(x_train, c_train)
    f_train = pre.features(c_train)
    f_val = pre.features(c_val)
    cfg = _paper_model()
    model = Peer(cfg, x_train.shape[1], f_train.shape[1])
    params = [p for p in model.parameters() if p.requires_grad]
    n_weights = sum(p.numel() for p in params)
    kernels = [p for p in params if p.dim() >= 2]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    xt, ct = torch.from_numpy(x_train), torch.from_numpy(c_train)
    rng = np.random.default_rng(SEED)

    def run(n_steps):
        for _ in range(n_steps):
            idx = torch.from_numpy(rng.integers(0, len(x_train), args.batch_size))
            nll = -model.log_prob(xt[idx], ct[idx], f_train[idx], pre).mean()
            loss = nll + 1e-5 * sum((k * k).sum() for k in kernels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
        return float(nll)

    start = time.perf_counter()
    run(args.warmup)
    warmup_s = time.perf_counter() - start
    # Best of ``repeats`` rounds: the rate least disturbed by other processes.
    train_s, last_nll = best_of(lambda: run(args.steps), args.repeats)

    xv, cv = torch.from_numpy(x_val), torch.from_numpy(c_val)

    @torch.no_grad()
    def log_likelihood():
        total, chunk = 0.0, args.eval_batch
        for i in range(0, len(x_val), chunk):
            sl = slice(i, i + chunk)
            total += float(model.log_prob(xv[sl], cv[sl], f_val[sl], pre).sum())
        return total / len(x_val)

    log_likelihood()
    ll_s, mean_ll = best_of(log_likelihood, args.repeats)

    n = args.sample_events
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        model.sample(cv[:n], f_val[:n], args.draws, pre, generator)
        sample_s, draws = best_of(
            lambda: model.sample(cv[:n], f_val[:n], args.draws, pre, generator),
            args.repeats,
        )
    result = {
        "framework": "FrEIA 0.2 (PyTorch)",
        "torch": torch.__version__,
        "n_weights": n_weights,
        "batch_size": args.batch_size,
        "warmup_s": warmup_s,
        "train_events_per_s": args.steps * args.batch_size / train_s,
        "last_train_nll": last_nll,
        "val_mean_log_likelihood": mean_ll,
        "loglik_events_per_s": len(x_val) / ll_s,
        "draws_per_s": n * args.draws / sample_s,
        "finite_draws": float(torch.isfinite(draws).all(1).float().mean()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    Path(args.worker_out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
