"""``movierec availability``: the site's availability from the lake, as a table a person reads."""

from __future__ import annotations

import pandas as pd

from movierec import lake
from movierec.settings import Settings


def table(settings: Settings, window: str, last: int) -> pd.DataFrame:
    """The newest ``last`` rows of ``window`` per server (rolling windows: one per ingest batch)."""
    frame = lake.read_table(settings, "availability").to_pandas()
    frame = frame[frame["window"] == window].sort_values(["server", "start", "end"])
    frame = frame.drop_duplicates(["server", "start", "end"], keep="last")
    return frame.groupby("server", sort=True).tail(last)


def render(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "no availability computed yet (the ingest_movielog DAG computes it after each batch)\n"
    lines = [
        f"{'server':<22} {'start':<19} {'end':<19} {'requests':>9} {'down':>6} {'availability':>12}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'fallback':>8}"
    ]
    for row in frame.itertuples():
        share = "" if pd.isna(row.fallback_share) else f"{row.fallback_share:.1%}"
        p50 = "" if pd.isna(row.latency_p50_ms) else f"{row.latency_p50_ms:.0f}"
        p99 = "" if pd.isna(row.latency_p99_ms) else f"{row.latency_p99_ms:.0f}"
        lines.append(
            f"{row.server:<22} {row.start:%Y-%m-%d %H:%M:%S} {row.end:%Y-%m-%d %H:%M:%S} {row.requests:>9,}"
            f" {row.requests - row.up:>6,} {row.availability:>12.4%} {p50:>7} {p99:>7} {share:>8}"
        )
    return "\n".join(lines) + "\n"
