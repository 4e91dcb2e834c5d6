"""``movierec world calibration``: the site's history against real movie data, as a table.

The interactions are one per (user, movie), with the time of its first watch line, read either

- from the lines a backfill writes (default): the backfill's own generator
  (simulator.backfill.history_lines, same seed, span and knobs as ``world backfill``), every
  line parsed with movierec.movielog, without Kafka; or
- from a lake (``--lake``): the ``watch_session`` table, e.g. after ``make up``.

The real figures are those of issue 13 (MovieLens ml-latest-small, 100,836 ratings; Gini of
ML-1M and ML-20M as published by LensKit; the NDCG ratio of Ferrari Dacrema et al. 2022).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from movierec import lake
from movierec.files import save_figure
from movierec.movielog import RecoEvent, WatchEvent, parse_line
from movierec.settings import Settings
from simulator import calibration
from simulator.backfill import history_lines
from simulator.history import History
from simulator.truth import scores_for_users
from simulator.viewers import browse_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """A real figure and the range we accept for ours (``low``..``high``)."""

    label: str
    real: str
    low: float
    high: float
    percent: bool = True


# Where two real data sets disagree the range spans them; where we have a single real figure,
# ±5 points around it (real catalogues differ at least that much, e.g. Gini 0.63 to 0.90).
TARGETS: dict[str, Target] = {
    "top20": Target("share of interactions on the 20 most popular movies", "4.7% (2.1% later)", 0.021, 0.047),
    "top1pct": Target("share on the top 1% of movies", "15.8%", 0.108, 0.208),
    "top10pct": Target("share on the top 10% of movies", "60.1%", 0.551, 0.651),
    "gini": Target("Gini of item popularity", "0.72 (ML-1M 0.63, ML-20M 0.90)", 0.63, 0.90, percent=False),
    "at_most_5": Target("movies with ≤ 5 interactions", "66%", 0.61, 0.71),
    "ease_ratio": Target(
        "Recall@20 of EASE (λ = 200) over popularity, per-user temporal 80/20",
        "1.66x (0.166 vs 0.100); NDCG@10 2.6x ML-20M, 3.3x Netflix",
        1.66,
        3.3,
        percent=False,
    ),
}


@dataclass(frozen=True)
class Interactions:
    """One row per (user, movie): user id, movie index, first watch time (ms since the epoch)."""

    users: np.ndarray
    items: np.ndarray
    times: np.ndarray
    n_items: int
    source: str
    sessions: int = 0  # sessions seen in the lines (0 from a lake)
    starts_from_list: int = 0  # of them, sessions whose movie was in the list just shown


class LineCollector:
    """Reads movielog lines one at a time and keeps the first watch of each (user, movie)."""

    def __init__(self, movie_index: dict[str, int]) -> None:
        self.movie_index = movie_index
        self.first: dict[tuple[int, int], int] = {}
        self.shown: dict[int, frozenset[str]] = {}  # each user's last list, until their next start
        self.sessions = 0
        self.from_list = 0
        self.unknown_movies = 0

    def add(self, line: str | bytes) -> None:
        event = parse_line(line)
        if isinstance(event, RecoEvent):
            self.shown[event.user_id] = frozenset(event.items)
        elif isinstance(event, WatchEvent):
            movie = self.movie_index.get(event.movie_id)
            if movie is None:
                self.unknown_movies += 1
                return
            if event.minute == 0:  # a session starts streaming
                self.sessions += 1
                self.from_list += event.movie_id in self.shown.pop(event.user_id, ())
            key = (event.user_id, movie)
            if key not in self.first:
                self.first[key] = int(event.time.timestamp() * 1000)

    def interactions(self, n_items: int, source: str) -> Interactions:
        keys = np.fromiter((x for pair in self.first for x in pair), np.int64, 2 * len(self.first))
        pairs = keys.reshape(-1, 2)
        return Interactions(
            users=pairs[:, 0],
            items=pairs[:, 1],
            times=np.fromiter(self.first.values(), np.int64, len(self.first)),
            n_items=n_items,
            source=source,
            sessions=self.sessions,
            starts_from_list=self.from_list,
        )


def from_lines(lines: Iterable[str | bytes], movie_ids: np.ndarray, source: str) -> Interactions:
    """The interactions of movielog ``lines`` (movie ids not in ``movie_ids`` are counted, dropped)."""
    collector = LineCollector({str(slug): i for i, slug in enumerate(movie_ids)})
    began, count = time.monotonic(), 0
    for line in lines:
        collector.add(line)
        count += 1
        if count % 2_000_000 == 0:
            log.info("calibration: %d lines read (%.0f lines/s)", count, count / (time.monotonic() - began))
    if collector.unknown_movies:
        log.warning("calibration: %d watch lines of movies not in the catalog", collector.unknown_movies)
    log.info("calibration: %d lines, %d (user, movie) pairs", count, len(collector.first))
    return collector.interactions(len(movie_ids), source)


def from_backfill(
    history: History, *, seed: int, end: datetime, days: float, sessions_per_day: int, follow: float
) -> Interactions:
    """The interactions of the lines ``world backfill`` would write with these arguments."""
    start = end - timedelta(days=days)
    rng = np.random.default_rng(seed)  # as simulator.backfill.run_backfill seeds it
    lines = (line for _, _, line in history_lines(rng, history, start, days, sessions_per_day, follow))
    source = f"backfill lines, {days:g} days to {end:%Y-%m-%d %H:%M}, {sessions_per_day:,} sessions/day"
    return from_lines(lines, history.slugs, source)


def from_lake(settings: Settings, movie_ids: np.ndarray) -> Interactions:
    """The interactions of the lake's ``watch_session`` table (first time per user and movie)."""
    table = lake.read_table(settings, "watch_session", ["user_id", "movie_id", "first_time"])
    frame = table.to_pandas().groupby(["user_id", "movie_id"], as_index=False)["first_time"].min()
    index = {str(slug): i for i, slug in enumerate(movie_ids)}
    items = frame["movie_id"].map(index)
    known = items.notna().to_numpy()
    if not known.all():
        log.warning("calibration: %d lake pairs of movies not in the catalog", int((~known).sum()))
    times = frame["first_time"].to_numpy("datetime64[ms]").astype(np.int64)
    return Interactions(
        users=frame["user_id"].to_numpy(np.int64)[known],
        items=items.to_numpy()[known].astype(np.int64),
        times=times[known],
        n_items=len(movie_ids),
        source=f"lake {lake.lake_dir(settings)} (watch_session)",
    )


TRUTH = "truth (exposure x true taste)"


def truth_ranking(history: History) -> Callable[[np.ndarray], np.ndarray]:
    """Evaluation only: users' scores by what makes a browsing viewer start a movie.

    A browsing viewer meets a movie in proportion to its browse weight and picks it with a
    softmax of their taste over the choice temperature, so log(weight) + affinity / temperature
    ranks movies by how likely the viewer starts them: the most a model could know, a ceiling
    of sorts for Recall@20 on the same split (the list shown is left out).
    """
    behaviour, truth = history.audience.behaviour, history.audience.truth
    exposure = np.log(browse_weights(history.popularity, behaviour.browse_popularity_power) + 1e-12)

    def scores(user_ids: np.ndarray) -> np.ndarray:
        return exposure + scores_for_users(truth, user_ids) / behaviour.choice_temperature

    return scores


def measure(data: Interactions, **reference_options: Any) -> dict[str, Any]:
    """Every statistic of the table, and what it was measured on (options: of reference_cf)."""
    counts = calibration.item_counts(data.items, data.n_items)
    started = time.monotonic()
    reference = calibration.reference_cf(
        data.users, data.items, data.times, data.n_items, **reference_options
    )
    log.info("calibration: EASE and popularity evaluated in %.1f s", time.monotonic() - started)
    users = np.unique(data.users)
    return {
        "source": data.source,
        "pairs": len(data.items),
        "users": len(users),
        "movies": data.n_items,
        "pairs_per_user": len(data.items) / max(len(users), 1),
        "sessions": data.sessions,
        "starts_from_list": data.starts_from_list / data.sessions if data.sessions else None,
        "top20": calibration.top_k_share(counts, 20),
        "top1pct": calibration.top_fraction_share(counts, 0.01),
        "top10pct": calibration.top_fraction_share(counts, 0.10),
        "gini": calibration.gini(counts),
        "at_most_5": calibration.share_at_most(counts, 5),
        "ease_ratio": reference.ratio,
        "reference": asdict(reference),
        "counts": counts,
    }


def in_range(key: str, value: float) -> bool:
    target = TARGETS[key]
    return not math.isnan(value) and target.low <= value <= target.high


def render(stats: dict[str, Any]) -> str:
    """The table (real vs ours) as Markdown."""
    ref = stats["reference"]
    lines = [
        f"Ours: {stats['source']}; {stats['pairs']:,} (user, movie) pairs over {stats['users']:,} users "
        f"({stats['pairs_per_user']:.2f} a user); Gini over all {stats['movies']:,} movies.",
        "",
        "| statistic | real data | accepted | ours | |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for key, target in TARGETS.items():
        value = stats[key]
        if target.percent:
            shown, accepted = f"{value:.1%}", f"{target.low:.1%} - {target.high:.1%}"
        else:
            shown, accepted = f"{value:.3f}", f"{target.low:.2f} - {target.high:.2f}"
        if key == "ease_ratio":
            shown = f"{value:.2f}x ({ref['ease_recall']:.3f} vs {ref['popularity_recall']:.3f})"
        mark = "in range" if in_range(key, value) else "**outside**"
        lines.append(f"| {target.label} | {target.real} | {accepted} | {shown} | {mark} |")
    lines += [
        "",
        f"EASE split: {ref['eval_users']:,} users with ≥ {calibration.MIN_USER_ITEMS} movies, "
        f"{ref['test_pairs']:,} held-out pairs (the last 20% of each by time); EASE fitted on the "
        f"{ref['ease_items']:,} movies with ≥ {calibration.EASE_MIN_ITEM_COUNT} training interactions "
        f"(at most {calibration.EASE_MAX_ITEMS:,}); popularity = training counts; seen movies excluded.",
    ]
    if TRUTH in ref["others"]:
        ceiling = ref["others"][TRUTH]
        lines.append(
            f"Evaluation only, on the same split: ranking by the ground truth ({TRUTH}) reaches "
            f"Recall@20 {ceiling:.3f}, {ceiling / ref['popularity_recall']:.2f}x popularity: how much "
            "taste the history holds for a model that had all the data it needs."
        )
    if stats["starts_from_list"] is not None:
        lines.append(
            f"Sessions: {stats['sessions']:,}; {stats['starts_from_list']:.1%} started a movie of the list "
            "shown just before (the site's global popularity list in a backfill)."
        )
    return "\n".join(lines) + "\n"


def plot(stats: dict[str, Any], path: Path) -> None:
    """Popularity curve and Lorenz curve (most popular first) beside the real reference points."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    counts = np.sort(stats["counts"])[::-1]
    fig, (curve, lorenz) = plt.subplots(1, 2, figsize=(11, 4.2))
    ranks = np.arange(1, len(counts) + 1)
    positive = counts > 0
    curve.loglog(ranks[positive], counts[positive], lw=1.2)
    curve.axhline(5, color="grey", ls=":", lw=1)
    curve.set(xlabel="movie rank by interactions", ylabel="interactions", title="Popularity curve (ours)")
    share_items = ranks / len(counts)
    share_pairs = np.cumsum(counts) / max(counts.sum(), 1)
    lorenz.plot(share_items, share_pairs, lw=1.5, label=f"ours (Gini {stats['gini']:.3f})")
    lorenz.plot([0.01, 0.10], [0.158, 0.601], "o", color="C3", label="real (ml-latest-small)")
    lorenz.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="equal popularity")
    lorenz.set_xscale("log")
    lorenz.set(
        xlabel="share of movies, most popular first",
        ylabel="share of interactions",
        title="Concentration",
        xlim=(1 / len(counts), 1),
        ylim=(0, 1),
    )
    lorenz.legend(loc="upper left", fontsize=8)
    save_figure(fig, path, dpi=110)
    log.info("calibration: plot written to %s", path)
