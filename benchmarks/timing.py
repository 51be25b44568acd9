"""Timing helper shared by the benchmark workers (imported from the script folder,
so that the FrEIA peer's own venv can use it without cinnflow installed)."""

import time


def best_of(fn, repeats):
    """Fastest of ``repeats`` calls of ``fn``: (seconds, result of that call).

    The fastest round is the one least disturbed by other processes on the machine;
    both frameworks are timed the same way.
    """
    best = None
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        if best is None or seconds < best[0]:
            best = (seconds, out)
    return best
