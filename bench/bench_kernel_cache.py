"""What a fresh process pays for the compiled top-k scan: compiled, or loaded from numba's disk cache.

Every Python worker of a precompute (and its driver) starts by getting
``topk.scan_rows`` compiled (``topk.compile_kernel``). Side by side in one run,
each in a fresh interpreter, median of ``--repeat``:

- **compile**: an empty cache folder, so the kernel is compiled (and the cache written),
  as on the first run after the source file changed;
- **load**: the cache folder that run filled, as on every later run;

each timed inside the process from ``compile_kernel`` through the first call on
one block, and the interpreter's whole life beside it.

    .venv/bin/python bench/bench_kernel_cache.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# one process: the kernel compiled or loaded, and called once on a block of 128 users
_PROBE = """
import time
import numpy as np
from movierec.models.topk import compile_kernel, scan_rows
started = time.perf_counter()
scan = compile_kernel(scan_rows)
items, best = np.full((128, 20), -1, np.int32), np.full((128, 20), -np.inf, np.float32)
scores = np.random.default_rng(0).standard_normal((128, 27000)).astype(np.float32)
scan(scores, np.zeros(129, np.int64), np.zeros(0, np.int64), 4, items, best)
print(time.perf_counter() - started, sum(scan.stats.cache_hits.values()))
"""


def probe(cache_dir: Path) -> tuple[float, float, int]:
    """(seconds from compile_kernel through the first call, seconds of the whole process, cache hits)."""
    env = os.environ | {"NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=REPO, capture_output=True, text=True)
    whole = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    kernel, hits = run.stdout.split()
    return float(kernel), whole, int(hits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    rows: dict[str, list[tuple[float, float]]] = {"compile": [], "load": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            cache = Path(tmp) / f"run{run}"
            cache.mkdir()
            kernel, whole, hits = probe(cache)  # empty folder: compiled, cache written
            assert hits == 0, "an empty cache folder gave a hit"
            rows["compile"].append((kernel, whole))
            kernel, whole, hits = probe(cache)  # the same folder: loaded
            assert hits == 1, "the second process did not load the cache"
            rows["load"].append((kernel, whole))
            print(f"run {run + 1}/{args.repeat} done", file=sys.stderr)
    medians = {
        name: (statistics.median(k for k, _ in values), statistics.median(w for _, w in values))
        for name, values in rows.items()
    }
    for name, (kernel, whole) in medians.items():
        runs = ", ".join(f"{k:.2f}" for k, _ in rows[name])
        print(f"{name:<8} kernel to first call median {kernel:5.2f} s ({runs}); whole process {whole:5.2f} s")
    compiled, loaded = medians["compile"][0], medians["load"][0]
    print(f"load / compile: {loaded / compiled:.2f}x ({compiled - loaded:.2f} s less per process)")


if __name__ == "__main__":
    main()
