"""Measure the throughput of the event chain (events per second per core).

Runs ``cinnflow.events.simulate`` for the default process (pp -> ZW -> (l l)(q q)
at 13 TeV, settings from ``config/processes/zw.yaml``, jets and detector card from
``config/config.yaml``: hadronisation on, MPI off) in one process (one core) and
prints a table: end to end, and each part on its own (Pythia generation,
conversion to Delphes particles, leptons + jets + detector, ROOT writing), for each
particle record mode. As the peer, the same Pythia settings run alone (``nextBatch``
only, nothing done with the events) in the same process; the ratio end-to-end /
Pythia-alone says how much of Pythia's own speed the chain keeps. Not a test.

Usage:
    .venv/bin/python benchmarks/bench_events.py --n-events 5000
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import yaml

from cinnflow.events import simulate
from cinnflow.events.generate import _make_pythia, _pythia_settings
from cinnflow.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
EVENTS = CONFIG["events"]
PROCESS = yaml.safe_load((ROOT / CONFIG["process"]).read_text())
CARD = ROOT / EVENTS["detector_card"]
SWITCHES = {key: EVENTS[key] for key in ("sqrt_s_gev", "isr", "fsr", "mpi")}
SWITCHES["hadronisation"] = EVENTS["hadronisation"]


def _pythia_alone(n_events, seed, batch_size):
    """Events per second of Pythia alone (init excluded), same settings."""
    lines = _pythia_settings(seed=seed, lhe_file=None, lhe_skip=0, **SWITCHES)
    pythia, _ = _make_pythia(lines + list(PROCESS["pythia_settings"]))
    start = time.perf_counter()
    done = 0
    while done < n_events:
        done += len(pythia.nextBatch(min(batch_size, n_events - done)))
    return done / (time.perf_counter() - start)


def _run(n_events, seed, batch_size, record, directory):
    output = Path(directory) / f"bench_{record}.root"
    start = time.perf_counter()
    stats = simulate(
        output=output,
        n_events=n_events,
        seed=seed,
        settings=PROCESS["pythia_settings"],
        detector_card=CARD,
        jets=EVENTS["jets"],
        batch_size=batch_size,
        particle_record=record,
        log_every=10 * n_events,
        **SWITCHES,
    )
    wall = time.perf_counter() - start
    rows = [("end to end (incl. init)", n_events / wall)]
    rows.append(("event loop", stats["events_per_second"]))
    for part, seconds in stats["seconds_by_part"].items():
        rows.append((part, n_events / seconds if seconds > 0 else float("inf")))
    size = output.stat().st_size / n_events
    return rows, size, stats["events_per_second"]


def main(argv=None):
    """Run the benchmark and write the table to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-events", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--records", nargs="+", default=["hard", "full"])
    args = parser.parse_args(argv)
    setup_logging(None, level=logging.WARNING)

    # The peer runs before and after the chain; a loaded machine shows as a
    # difference between the two.
    alone = [_pythia_alone(args.n_events, args.seed, args.batch_size)]
    lines = [
        f"events: {args.n_events}, batch {args.batch_size}, one core; "
        f"switches {SWITCHES}, jets {EVENTS['jets']}"
    ]
    lines.append(f"{'record':<6} {'part':<26} {'events/s':>10}")
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for record in args.records:
            results.append(
                (
                    record,
                    *_run(args.n_events, args.seed, args.batch_size, record, directory),
                )
            )
    alone.append(_pythia_alone(args.n_events, args.seed, args.batch_size))
    peer = sum(alone) / len(alone)
    lines.append(
        f"{'-':<6} {'pythia alone (peer)':<26} {peer:>10.0f}"
        f"  (before {alone[0]:.0f}, after {alone[1]:.0f})"
    )
    for record, rows, size, loop_rate in results:
        for part, rate in rows:
            lines.append(f"{record:<6} {part:<26} {rate:>10.0f}")
        lines.append(f"{record:<6} {'file size (bytes/event)':<26} {size:>10.0f}")
        lines.append(
            f"{record:<6} {'loop / pythia alone':<26} {loop_rate / peer:>10.2f}"
        )
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
