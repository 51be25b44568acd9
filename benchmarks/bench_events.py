"""Measure the throughput of the event chain (events per second per core).

Runs ``cinnflow.events.simulate`` for pp -> ZW -> (l l)(q q) at 13 TeV in one
process (one core) and prints a table: end to end, and each part on its own
(Pythia generation, conversion to Delphes particles, leptons + jets + detector,
ROOT writing), for each particle record mode. Not a test.

Usage:
    .venv/bin/python benchmarks/bench_events.py --n-events 5000
"""

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from cinnflow.events import simulate
from cinnflow.logs import setup_logging

CARD = Path(__file__).resolve().parents[1] / "config" / "detector" / "atlas.yaml"
SETTINGS = [
    "WeakDoubleBoson:ffbar2ZW = on",
    "23:onMode = off",
    "23:onIfAny = 11 13",
    "24:onMode = off",
    "24:onIfAny = 1 2 3 4",
]
JETS = {"radius": 0.4, "pt_min_gev": 20.0, "eta_max": 4.5}


def _run(n_events, seed, batch_size, record, directory):
    output = Path(directory) / f"bench_{record}.root"
    start = time.perf_counter()
    stats = simulate(
        output=output,
        n_events=n_events,
        seed=seed,
        settings=SETTINGS,
        detector_card=CARD,
        jets=JETS,
        batch_size=batch_size,
        particle_record=record,
        log_every=10 * n_events,
    )
    wall = time.perf_counter() - start
    rows = [("end to end (incl. init)", n_events / wall)]
    rows.append(("event loop", stats["events_per_second"]))
    for part, seconds in stats["seconds_by_part"].items():
        rows.append((part, n_events / seconds if seconds > 0 else float("inf")))
    size = output.stat().st_size / n_events
    return rows, size


def main(argv=None):
    """Run the benchmark and write the table to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-events", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--records", nargs="+", default=["full", "hard"])
    args = parser.parse_args(argv)
    setup_logging(None, level=logging.WARNING)

    lines = [f"events: {args.n_events}, batch {args.batch_size}, one core"]
    lines.append(f"{'record':<6} {'part':<26} {'events/s':>10}")
    with tempfile.TemporaryDirectory() as directory:
        for record in args.records:
            rows, size = _run(
                args.n_events, args.seed, args.batch_size, record, directory
            )
            for part, rate in rows:
                lines.append(f"{record:<6} {part:<26} {rate:>10.0f}")
            lines.append(f"{record:<6} {'file size (bytes/event)':<26} {size:>10.0f}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
