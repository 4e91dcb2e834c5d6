"""The statistics of drift detection: pure functions from counts to PSI, chi-square and a verdict.

A signal is a categorical (or binned) distribution: ``{category: count}`` for the
reference window and for the batch. Two named tests compare them:

* **PSI** (population stability index) ``sum((q - p) * ln(q / p))`` over the
  categories of either side, ``p`` the reference share and ``q`` the batch share.
  An empty bin would make it infinite, so a share of 0 counts as
  ``EMPTY_BIN_SHARE`` (1e-4): a category new in the batch with share ``q`` adds
  about ``q * ln(q / 1e-4)`` (0.31 for 5%). Rule of thumb: < 0.1 stable, 0.1-0.25
  moderate, > 0.25 strong.
* **Pearson's chi-square** test of homogeneity on the 2 x k table of counts
  (``scipy.stats.chi2_contingency``, no continuity correction), with its p-value.
  Categories whose expected count is below ``MIN_EXPECTED`` on either side are
  pooled into one bin first, the usual condition for the chi-square
  approximation.

A signal drifts when PSI > the threshold (``MOVIEREC_DRIFT_PSI_THRESHOLD``) *and*
p < ``P_VALUE_THRESHOLD`` (0.001) *and* both sides have at least ``MIN_ROWS`` rows:
PSI says the change is large, the p-value that it is not sampling noise (a big
PSI from 20 rows is noise; a tiny p-value on millions of rows can be a trivial
change).

The helpers below turn lake columns into such counts; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2_contingency

EMPTY_BIN_SHARE = 1e-4  # share an empty bin counts as in PSI (documented above)
P_VALUE_THRESHOLD = 0.001  # chi-square p-value below which a change is not sampling noise
MIN_ROWS = 50  # rows each side needs before a verdict; below: "not enough data", never flagged
MIN_EXPECTED = 5.0  # chi-square: categories expected fewer times than this are pooled
POOLED = "(pooled)"

# Watch length: bins of the minute index of watch lines (a line at minute m: the viewer got m minutes in).
MINUTE_EDGES = (0, 5, 15, 30, 60, 90, 120)
MINUTE_BINS = ("0-4", "5-14", "15-29", "30-59", "60-89", "90-119", "120+")
RATINGS = ("1", "2", "3", "4", "5")
# Novelty (unseen users, unknown movies) is compared with the same hours one day earlier, each
# against at least an hour of history: a shorter history knows almost nobody, the share says nothing.
NOVELTY_PERIOD = np.timedelta64(24 * 3600 * 1_000_000, "us")
NOVELTY_MIN_HISTORY = np.timedelta64(3600 * 1_000_000, "us")

Counts = Mapping[str, float]


# --- the tests --------------------------------------------------------------------


def categories_of(reference: Counts, batch: Counts) -> list[str]:
    """Every category with a count on either side, in a stable order."""
    return sorted({k for k, v in reference.items() if v > 0} | {k for k, v in batch.items() if v > 0})


def psi(reference: Counts, batch: Counts) -> float:
    """Population stability index of ``batch`` against ``reference`` (0 when either side is empty)."""
    n_ref, n_batch = sum(reference.values()), sum(batch.values())
    if n_ref <= 0 or n_batch <= 0:
        return 0.0
    total = 0.0
    for category in categories_of(reference, batch):
        p = max(reference.get(category, 0) / n_ref, EMPTY_BIN_SHARE)
        q = max(batch.get(category, 0) / n_batch, EMPTY_BIN_SHARE)
        total += (q - p) * math.log(q / p)
    return total


def pool_rare(reference: Counts, batch: Counts) -> tuple[list[float], list[float], list[str]]:
    """The 2 x k table with categories expected fewer than MIN_EXPECTED times on a side pooled into one."""
    n_ref, n_batch = sum(reference.values()), sum(batch.values())
    n = n_ref + n_batch
    kept: list[str] = []
    ref_row: list[float] = []
    batch_row: list[float] = []
    pooled_ref = pooled_batch = 0.0
    for category in categories_of(reference, batch):
        r, b = float(reference.get(category, 0)), float(batch.get(category, 0))
        column = r + b
        if min(n_ref, n_batch) * column / n < MIN_EXPECTED:
            pooled_ref += r
            pooled_batch += b
            continue
        kept.append(category)
        ref_row.append(r)
        batch_row.append(b)
    if pooled_ref + pooled_batch > 0:
        kept.append(POOLED)
        ref_row.append(pooled_ref)
        batch_row.append(pooled_batch)
    return ref_row, batch_row, kept


def chi_square(reference: Counts, batch: Counts) -> tuple[float, float, int]:
    """Pearson's chi-square homogeneity test: (statistic, p-value, degrees of freedom).

    With fewer than two categories left after pooling there is nothing to compare: (0, 1, 0).
    """
    ref_row, batch_row, kept = pool_rare(reference, batch)
    if len(kept) < 2 or sum(ref_row) == 0 or sum(batch_row) == 0:
        return 0.0, 1.0, 0
    result = chi2_contingency(np.array([ref_row, batch_row]), correction=False)
    return float(result.statistic), float(result.pvalue), int(result.dof)


@dataclass(frozen=True)
class Verdict:
    """One signal of one batch, compared with its reference."""

    signal: str
    status: str  # "ok" (compared) or why it was not: "not enough data", "no catalog", ...
    psi: float | None
    chi2: float | None
    p_value: float | None
    reference_rows: int
    batch_rows: int
    drifted: bool
    reference: dict[str, float]  # the counts compared, for the report
    batch: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    signal: str,
    reference: Counts,
    batch: Counts,
    *,
    reference_rows: int,
    batch_rows: int,
    psi_threshold: float,
    status: str = "ok",
) -> Verdict:
    """Both tests on one signal; drifted only with enough rows, PSI > threshold and p < 0.001."""
    counts = {"reference": dict(reference), "batch": dict(batch)}
    if status == "ok" and min(reference_rows, batch_rows) < MIN_ROWS:
        status = "not enough data"
    if status != "ok":
        return Verdict(signal, status, None, None, None, reference_rows, batch_rows, False, **counts)
    index = psi(reference, batch)
    statistic, p_value, _ = chi_square(reference, batch)
    drifted = index > psi_threshold and p_value < P_VALUE_THRESHOLD
    return Verdict(signal, status, index, statistic, p_value, reference_rows, batch_rows, drifted, **counts)


# --- distributions of lake columns -------------------------------------------------------


def category_counts(values: Iterable[Any], categories: Sequence[str] = ()) -> dict[str, float]:
    """Counts by the text of each value; ``categories`` are always present (0 if unseen)."""
    counts: dict[str, float] = dict.fromkeys(categories, 0.0)
    for value, count in Counter(str(v) for v in values).items():
        counts[value] = counts.get(value, 0.0) + count
    return counts


def status_counts(statuses: Iterable[int]) -> dict[str, float]:
    """Recommendation requests by outcome: 200, 0 (the client gave up) or any other code."""
    return category_counts(
        (s if s in (200, 0) else "other" for s in statuses), categories=("200", "0", "other")
    )


def minute_bin_index(minutes: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.array(MINUTE_EDGES[1:]), minutes, side="right")


def minute_counts_of_lines(minutes: np.ndarray) -> dict[str, float]:
    """Watch lines by the bin of their minute index."""
    counts = np.bincount(minute_bin_index(np.asarray(minutes, np.int64)), minlength=len(MINUTE_BINS))
    return {label: float(c) for label, c in zip(MINUTE_BINS, counts, strict=True)}


def minute_counts_of_sessions(max_minute: np.ndarray, minutes_seen: np.ndarray) -> dict[str, float]:
    """The same histogram from session rows: a session streamed minutes max-seen+1 .. max, one line each.

    Exact when a session streams consecutive minutes (it does on the site, apart from a viewer
    seeking), so the reference can be read from the small ``watch_session`` table.
    """
    high = np.asarray(max_minute, np.int64) + 1  # one past the last minute
    low = np.maximum(high - np.asarray(minutes_seen, np.int64), 0)
    edges = [*MINUTE_EDGES, np.iinfo(np.int64).max]
    counts = {}
    for label, start, end in zip(MINUTE_BINS, edges[:-1], edges[1:], strict=True):
        overlap = np.minimum(high, end) - np.maximum(low, start)
        counts[label] = float(np.clip(overlap, 0, None).sum())
    return counts


def genre_counts(
    movie_ids: Iterable[str], genres_of: Mapping[str, Sequence[str]]
) -> tuple[dict[str, float], int]:
    """Genre mix of sessions: each session counts once for every genre of its movie.

    Returns the counts and the number of sessions whose movie's genres are known (the others
    are left out: the catalog may not have them yet).
    """
    counts: dict[str, float] = {}
    known = 0
    for movie_id in movie_ids:
        genres = genres_of.get(movie_id)
        if genres is None:
            continue
        known += 1
        for genre in genres or ("(no genre)",):
            counts[genre] = counts.get(genre, 0.0) + 1
    return counts, known


def novelty_counts(ids: Iterable[Any], known: set[Any] | frozenset[Any]) -> dict[str, float]:
    """How many of ``ids`` are in ``known`` and how many are not."""
    seen = unseen = 0
    for ident in ids:
        if ident in known:
            seen += 1
        else:
            unseen += 1
    return {"known": float(seen), "unknown": float(unseen)}


def quarantine_counts(lines: int, reasons: Iterable[str]) -> dict[str, float]:
    """Lines by fate: accepted, or quarantined with their reason (a format change shows as a new reason)."""
    counts = category_counts(reasons)
    counts["accepted"] = float(lines) - sum(counts.values())
    if counts["accepted"] < 0:
        raise ValueError(f"more quarantined rows ({lines - counts['accepted']:.0f}) than lines ({lines})")
    return counts


def novelty_against_history(
    reference_times: np.ndarray,
    reference_ids: np.ndarray,
    batch_ids: Sequence[Any],
    *,
    end: np.datetime64,
    span: np.timedelta64,
    distinct: bool,
    never_known: frozenset[Any] = frozenset(),
) -> tuple[dict[str, float], dict[str, float]] | None:
    """Ids never seen before, for the batch and for the same hours one day earlier.

    A share of "new" ids only means something next to the share the reference itself had,
    at the same time of day (who is awake changes through the day) and against a history of
    the same length (the longer the history, the fewer ids are new). So the batch, which
    begins at ``end`` and lasts ``span``, is measured against the last H of the reference,
    and the reference's ``[end - 1 day, end - 1 day + span)`` against the H before that,
    H being all the reference has before it. With ``distinct`` each id counts once per side
    (users), otherwise once per event (movies). Ids in ``never_known`` are unknown even when
    seen (movies the catalog answered 404 for). None when the reference is too short: it
    needs a day plus ``NOVELTY_MIN_HISTORY``.
    """
    if len(reference_times) == 0:
        return None
    tail_start = end - NOVELTY_PERIOD
    tail_end = tail_start + span
    history = tail_start - reference_times.min()
    if tail_end > end or history < NOVELTY_MIN_HISTORY:
        return None
    in_tail = (reference_times >= tail_start) & (reference_times < tail_end)
    known_to_tail = set(reference_ids[reference_times < tail_start].tolist()) - never_known
    known_to_batch = set(reference_ids[reference_times >= end - history].tolist()) - never_known
    tail_ids: Iterable[Any] = reference_ids[in_tail].tolist()
    if distinct:
        tail_ids, batch_ids = set(tail_ids), set(batch_ids)
    return novelty_counts(tail_ids, known_to_tail), novelty_counts(batch_ids, known_to_batch)
