"""Feedback loops on a simulated timeline of retrain cycles (evaluation only: reads the truth).

A cycle: the serving file of the last retrain gives every user their list; viewers choose from it
(or browse) with the ``follow`` knob (simulator.viewers.session, the live site's choice model);
their sessions are written into the lake as one ingest batch (reco lines naming our service,
watch lines, ratings) and join the history; then the product retrains on everything (prepare,
train, evaluate, precompute: simulator.spam_check.served_version) and the next cycle serves the
new file. Per cycle the loop measures (movierec.feedback.measures) are computed from what was
shown and watched, and the truth says how much viewers really enjoyed what they watched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from movierec import serving_file
from movierec.feedback import measures
from movierec.ingest import consume
from movierec.settings import Settings
from simulator.backfill import HOURLY_SHARE, scripted_lines
from simulator.catalog import GENRE_NAMES, load_world
from simulator.history import History, Line, Scripted
from simulator.spam_check import PARTITIONS, commit_batch
from simulator.truth import affinity, enjoyment, load_truth
from simulator.viewers import Behaviour, session

log = logging.getLogger(__name__)

SERVER = "movierec:8082"  # what the site logs as the answering service


@dataclass(frozen=True)
class Session:
    """One simulated session of a cycle: who, what they were shown, what they watched."""

    moment: datetime
    user_id: int
    shown: np.ndarray  # movie indices, best first
    movie: int
    from_list: bool
    minutes: int
    rating: int | None


def load_site(settings: Settings, list_fit_power: float) -> History:
    """The site with viewers who look at a list with probability ``follow x fit ** list_fit_power``."""
    world = load_world(settings)
    return History.build(world, load_truth(settings, world), Behaviour(list_fit_power=list_fit_power))


def served_lists(path: Path, history: History) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Every user's list of the serving file as movie indices, and its fallback line (for the rest)."""
    index = {str(slug): i for i, slug in enumerate(history.slugs)}

    def indices(line: str) -> np.ndarray:
        return np.array([index[item] for item in line.split(",") if item in index], dtype=np.int64)

    db = serving_file.open_readonly(path)
    try:
        rows = db.execute("SELECT user_id, items FROM recs").fetchall()
    finally:
        db.close()
    fallback = indices(serving_file.read_meta(path)["fallback"])
    return {int(user): indices(items) for user, items in rows}, fallback


def cycle_sessions(
    rng: np.random.Generator,
    history: History,
    lists: dict[int, np.ndarray],
    fallback: np.ndarray,
    *,
    follow: float,
    start: datetime,
    days: float,
    sessions_per_day: int,
) -> list[Session]:
    """``days`` of sessions from ``start`` (busy hours as in the backfill), each user shown their list."""
    out = []
    hours = round(days * 24)
    for hour in range(hours):
        hour_start = start + timedelta(hours=hour)
        count = rng.poisson(sessions_per_day * HOURLY_SHARE[hour_start.hour])
        offsets = np.sort(rng.integers(0, 3_600_000, count))
        for offset, user in zip(offsets, history.draw_users(rng, count), strict=True):
            shown = lists.get(int(user), fallback)
            outcome = session(rng, history.audience, int(user), shown, follow)
            moment = hour_start + timedelta(milliseconds=int(offset))
            out.append(
                Session(
                    moment,
                    int(user),
                    shown,
                    outcome.movie,
                    outcome.from_list,
                    outcome.minutes,
                    outcome.rating,
                )
            )
    return out


def session_records(
    rng: np.random.Generator, history: History, sessions: list[Session], first_offset: int
) -> list[consume.Record]:
    """The movielog records of ``sessions`` (time order, keyed by user), offsets from ``first_offset``."""
    lines: list[Line] = []
    for s in sessions:
        rate_delay = int(rng.integers(1_000, 120_000)) if s.rating is not None else 0
        scripted = Scripted(
            s.moment,
            s.user_id,
            s.movie,
            s.minutes,
            s.rating,
            int(rng.integers(15, 120)),
            int(rng.integers(5_000, 90_000)),
            rate_delay,
        )
        lines += scripted_lines(history, scripted, s.shown, SERVER)
    lines.sort(key=lambda line: line[0])
    return [
        consume.Record(user % PARTITIONS, first_offset + i, 0, str(text).encode())
        for i, (_, user, text) in enumerate(lines)
    ]


def append_sessions(
    settings: Settings, rng: np.random.Generator, history: History, sessions: list[Session], first_offset: int
) -> int:
    """Write ``sessions`` into the lake as one committed ingest batch; the next free offset."""
    records = session_records(rng, history, sessions, first_offset)
    commit_batch(settings, records, sessions[0].moment if sessions else datetime.now())
    return first_offset + len(records)


def genres_by_movie(history: History) -> dict[str, list[str]]:
    names = np.array(GENRE_NAMES, dtype=object)
    return {str(slug): list(names[row]) for slug, row in zip(history.slugs, history.genres, strict=True)}


@dataclass(frozen=True)
class CycleTruth:
    """What the truth says of a cycle's watches."""

    mean_affinity: float  # of the watched movies, standard units
    mean_enjoyment: float  # 0..1 (simulator.truth.enjoyment)


def truth_of(history: History, sessions: list[Session]) -> CycleTruth:
    users = np.array([s.user_id for s in sessions], dtype=np.int64)
    movies = np.array([s.movie for s in sessions], dtype=np.int64)
    scores = affinity(history.audience.truth, users, movies)
    return CycleTruth(float(np.mean(scores)), float(np.mean(enjoyment(scores))))


def cycle_measures(history: History, sessions: list[Session]) -> measures.PeriodMeasures:
    """The loop measures of one cycle: every list slot shown, every viewing, starts from lists."""
    slugs = history.slugs
    served: Iterator[str] = (str(slugs[i]) for s in sessions for i in s.shown)
    watches = pd.DataFrame(
        {"user_id": [s.user_id for s in sessions], "movie_id": [str(slugs[s.movie]) for s in sessions]}
    )
    return measures.period_measures(
        served,
        watches,
        [str(slug) for slug in slugs],
        genres_by_movie(history),
        starts=len(sessions),
        list_starts=sum(s.from_list for s in sessions),
    )
