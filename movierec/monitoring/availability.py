"""Availability as the site's graders count it, from its own log lines. Pure: tables in, tables out.

A recommendation request line is *up* when it says ``status 200`` and a latency under the
site's 800 ms budget; anything else is *down*: ``status 0`` (the client's timeout, a refused
connection, a body it could not use), any other HTTP code, or a 200 that came too late. Each
line counts once, whatever it asked for ("prefer low-quality recommendations over missing or
very slow answers").

Per server (the ``<server>`` of the line), for every 5-minute, hour and day bucket of the
site's local time, and for windows of 72 h and 96 h ending at the latest bucket with lines:
requests, up, the ways of being down, availability, the p50/p99 of the latency the site
logged (every line, failures too: a timeout is logged at the budget), and the share of
answered requests whose list was a fallback line.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from movierec.schemas import AVAILABILITY

BUDGET_MS = 800  # the site's request client gives up after this (DESIGN.md, "Operating")
OBJECTIVE = 0.999  # the availability we promise; alert rules burn its error budget
BUCKETS = {"5m": "5min", "1h": "h", "1d": "D"}  # window name -> pandas frequency
ROLLING = {"72h": timedelta(hours=72), "96h": timedelta(hours=96)}
ROLLING_GRAIN = "5m"  # rolling windows are sums of whole 5-minute buckets

COUNTS = ("requests", "up", "timeouts", "errors", "slow", "answered", "fallback")
READ_COLUMNS = ["time", "server", "status", "latency_ms", "items"]


def outcome(status: int, latency_ms: int) -> str:
    """What became of one request line: ``up``, ``slow`` (200 too late), ``timeout`` (status 0), ``error``."""
    if status == 200:
        return "up" if latency_ms < BUDGET_MS else "slow"
    return "timeout" if status == 0 else "error"


def outcomes(reco: pa.Table, fallbacks: Iterable[str]) -> pd.DataFrame:
    """One row per request line: time, server, latency and 0/1 columns of what became of it.

    ``fallbacks`` are the fallback lines of the serving files (``a,b,c``); an answer is a
    fallback when its items, joined the same way, are one of them.
    """
    status = reco.column("status").to_numpy(zero_copy_only=False).astype(np.int64)
    latency = reco.column("latency_ms").to_numpy(zero_copy_only=False).astype(np.int64)
    if "items" in reco.column_names and reco.num_rows:
        joined = pc.binary_join(reco.column("items"), ",")
        is_fallback = pc.is_in(joined, value_set=pa.array(sorted(set(fallbacks)), pa.string()))
        fallback = pc.fill_null(is_fallback, False).to_numpy(zero_copy_only=False)
    else:
        fallback = np.zeros(reco.num_rows, dtype=bool)
    answered = status == 200
    up = answered & (latency < BUDGET_MS)
    return pd.DataFrame(
        {
            "time": reco.column("time").to_pandas(),
            "server": reco.column("server").to_pandas(),
            "latency_ms": latency,
            "requests": 1,
            "up": up.astype(np.int64),
            "timeouts": (status == 0).astype(np.int64),
            "errors": (~answered & (status != 0)).astype(np.int64),
            "slow": (answered & ~up).astype(np.int64),
            "answered": answered.astype(np.int64),
            "fallback": (answered & fallback).astype(np.int64),
        }
    )


def nearest_rank(values: np.ndarray, q: float) -> float:
    """The q-quantile as an observed value (nearest rank: the smallest with at least q below it)."""
    return float(np.percentile(values, q * 100, method="inverted_cdf"))


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    frame["availability"] = frame["up"] / frame["requests"]
    answered = frame["answered"].where(frame["answered"] > 0)
    frame["fallback_share"] = frame["fallback"] / answered
    return frame


def buckets(lines: pd.DataFrame, window: str) -> pd.DataFrame:
    """Per (bucket, server) of ``window`` (5m, 1h or 1d) with lines: counts, availability, latency."""
    if lines.empty:
        return empty_frame()
    start = lines["time"].dt.floor(BUCKETS[window])
    grouped = lines.assign(start=start).groupby(["start", "server"], sort=True)
    frame = grouped[list(COUNTS)].sum()
    latency = grouped["latency_ms"]
    frame["latency_p50_ms"] = latency.agg(lambda v: nearest_rank(v.to_numpy(), 0.5))
    frame["latency_p99_ms"] = latency.agg(lambda v: nearest_rank(v.to_numpy(), 0.99))
    frame = frame.reset_index()
    frame["window"] = window
    frame["end"] = frame["start"] + pd.tseries.frequencies.to_offset(BUCKETS[window])
    return _finish(frame)[list(AVAILABILITY.names)]


def rolling(five_minutes: pd.DataFrame, lines: pd.DataFrame, end: datetime) -> pd.DataFrame:
    """The 72 h and 96 h windows ending at ``end`` (a 5-minute boundary): counts summed from the
    5-minute buckets, latency quantiles from the lines themselves (quantiles do not add up)."""
    rows = []
    for window, length in ROLLING.items():
        start = end - length
        inside = five_minutes[(five_minutes["start"] >= start) & (five_minutes["start"] < end)]
        in_lines = lines[(lines["time"] >= start) & (lines["time"] < end)]
        for server, group in inside.groupby("server", sort=True):
            latency = in_lines.loc[in_lines["server"] == server, "latency_ms"].to_numpy()
            row = {name: int(group[name].sum()) for name in COUNTS}
            row |= {"window": window, "start": start, "end": end, "server": server}
            row["latency_p50_ms"] = nearest_rank(latency, 0.5) if latency.size else None
            row["latency_p99_ms"] = nearest_rank(latency, 0.99) if latency.size else None
            rows.append(row)
    if not rows:
        return empty_frame()
    return _finish(pd.DataFrame(rows))[list(AVAILABILITY.names)]


def empty_frame() -> pd.DataFrame:
    return AVAILABILITY.empty_table().to_pandas()


def to_table(frame: pd.DataFrame) -> pa.Table:
    frame = frame.astype({"start": "datetime64[us]", "end": "datetime64[us]"})
    frame = frame.replace({np.nan: None})
    return pa.Table.from_pandas(frame, schema=AVAILABILITY, preserve_index=False)


def latest(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (window, server), the row with the latest start."""
    if frame.empty:
        return frame
    return frame.sort_values("start").groupby(["window", "server"], sort=True).tail(1)
