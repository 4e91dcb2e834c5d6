"""What Great Expectations costs per batch, beside what reading and parsing the same lines costs.

Side by side in one run, over the same watch lines (90% of the stream):

1. parse   ``movierec.ingest.consume.build_tables`` (the grammar + the typed Arrow tables), the baseline;
2. frame   ``quality.to_frame`` (Arrow -> the pandas frame GX validates);
3. gx      ``quality.check_tables`` on the watch table (the checkpoint, stored results, data docs),
           once on clean rows and once with 1% bad rows (row indices requested from GX).

Reported as seconds per 100,000 rows and as the ratio gx / parse; the absolute numbers depend on
the machine. A private, temporary ``MOVIEREC_HOME`` is used. Run on demand:

    .venv/bin/python bench/bench_quality.py [--rows 300000] [--repeat 2] [--profile]

``--profile`` then prints where one clean ``check_tables`` of the watch table spends its time
(cProfile, by own time): what decides which of GX's costs are worth attacking.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import tempfile
import time
from datetime import datetime, timedelta

import pyarrow as pa

from movierec import settings as settings_module
from movierec.ingest import quality
from movierec.ingest.consume import Record, build_tables
from movierec.movielog import WatchEvent, format_event


def watch_records(rows: int) -> list[Record]:
    start = datetime(2026, 11, 28, 10, 0, 0)
    records = []
    for n in range(rows):
        event = WatchEvent(
            start + timedelta(seconds=n // 50), 1 + n % 90_000, f"movie+{n % 27_000}+1999", n % 120
        )
        records.append(Record(n % 4, n, 1_795_000_000_000 + n, format_event(event).encode()))
    return records


def spoil(watch: pa.Table, every: int) -> pa.Table:
    """Every ``every``-th row gets a minute out of range (what the grammar lets through)."""
    minutes = watch["minute"].to_numpy().copy()
    minutes[::every] = 10_000
    index = watch.schema.get_field_index("minute")
    return watch.set_column(index, watch.schema.field(index), pa.array(minutes, pa.int32()))


def best(seconds: list[float]) -> float:
    return min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="cProfile one clean check at the end")
    args = parser.parse_args()
    settings = settings_module.load({"MOVIEREC_HOME": tempfile.mkdtemp(prefix="bench-quality-")})

    records = watch_records(args.rows)
    began = time.perf_counter()
    import great_expectations  # noqa: F401  (import cost reported apart: paid once per process)

    imported = time.perf_counter() - began
    began = time.perf_counter()
    quality.context(settings)
    first_context = time.perf_counter() - began
    print(f"GX import {imported:.2f} s, first context {first_context:.2f} s (once per process)")

    timings: dict[str, list[float]] = {"parse": [], "frame": [], "gx clean": [], "gx 1% bad": []}
    for run in range(args.repeat):
        began = time.perf_counter()
        watch = build_tables(records)["watch"]
        timings["parse"].append(time.perf_counter() - began)
        began = time.perf_counter()
        quality.to_frame(watch)
        timings["frame"].append(time.perf_counter() - began)
        began = time.perf_counter()
        clean = quality.check_tables(settings, {"watch": watch}, f"bench-clean-{run}")
        timings["gx clean"].append(time.perf_counter() - began)
        assert not clean.bad_rows["watch"].any()
        bad_table = spoil(watch, 100)
        began = time.perf_counter()
        bad = quality.check_tables(settings, {"watch": bad_table}, f"bench-bad-{run}")
        timings["gx 1% bad"].append(time.perf_counter() - began)
        assert int(bad.bad_rows["watch"].sum()) == len(range(0, args.rows, 100))
        print(f"run {run + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in timings.items()))

    per = 100_000 / args.rows
    parse = best(timings["parse"])
    print(f"\n{args.rows:,} watch rows, best of {args.repeat}; seconds per 100,000 rows:")
    for name, values in timings.items():
        print(f"  {name:10s} {best(values) * per:6.3f} s   ratio to parse {best(values) / parse:5.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(quality.check_tables, settings, {"watch": watch}, "bench-profile", data_docs=False)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
