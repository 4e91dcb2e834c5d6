"""The feedback-loop timeline's pieces (simulator.feedback_check) on a tiny world: lists from a
serving file, the follow knob deciding how many starts come from them, and the movielog lines."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from movierec import settings as settings_module
from movierec.movielog import RecoEvent, WatchEvent, parse_line
from simulator import commands, feedback_check
from simulator.truth import scores_for_users

START = datetime(2026, 11, 23)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("loop-home")
    settings = settings_module.load(
        {"MOVIEREC_HOME": str(home), "MOVIEREC_SCALE_USERS": "300", "MOVIEREC_SCALE_MOVIES": "80"}
    )
    return commands.load_history(settings)


def serving(path: Path, rows: dict[int, list[str]], fallback: list[str]) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE recs (user_id INTEGER PRIMARY KEY, items TEXT NOT NULL)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.executemany("INSERT INTO recs VALUES (?, ?)", [(u, ",".join(i)) for u, i in rows.items()])
    db.execute("INSERT INTO meta VALUES ('fallback', ?)", (",".join(fallback),))
    db.commit()
    db.close()
    return path


def test_lists_come_from_the_serving_file_and_the_fallback(site, tmp_path: Path) -> None:
    slugs = [str(s) for s in site.slugs]
    path = serving(tmp_path / "recs.sqlite", {1: [slugs[5], slugs[2], "no+such+movie"]}, [slugs[0], slugs[1]])
    lists, fallback = feedback_check.served_lists(path, site)
    assert lists[1].tolist() == [5, 2]  # an id the catalog does not know is dropped
    assert fallback.tolist() == [0, 1] and 2 not in lists


def test_the_follow_knob_sets_the_share_of_starts_from_lists(site) -> None:
    # every user's true top 20 (the oracle): a list that fits, so the knob decides who looks at it
    users = np.arange(1, site.n_users + 1)
    best = np.argsort(-scores_for_users(site.audience.truth, users), axis=1)[:, :20]
    lists = dict(zip(users.tolist(), best, strict=True))

    def share(follow: float) -> float:
        rng = np.random.default_rng(5)
        sessions = feedback_check.cycle_sessions(
            rng, site, lists, best[0], follow=follow, start=START, days=1, sessions_per_day=1500
        )
        measured = feedback_check.cycle_measures(site, sessions)
        assert measured.watches == len(sessions) and measured.slots == 20 * len(sessions)
        assert measured.list_share == sum(s.from_list for s in sessions) / len(sessions)
        return measured.list_share

    assert share(0.0) == 0.0  # nobody looks at a list they are never shown to follow
    assert share(1.0) > share(0.05)


def test_sessions_become_movielog_lines_naming_our_service_and_the_list(site) -> None:
    rng = np.random.default_rng(2)
    shown = np.array([3, 1, 4])
    sessions = feedback_check.cycle_sessions(
        rng, site, {}, shown, follow=0.5, start=START, days=0.25, sessions_per_day=400
    )
    assert sessions
    records = feedback_check.session_records(rng, site, sessions, first_offset=100)
    assert [r.offset for r in records] == list(range(100, 100 + len(records)))
    events = [parse_line(r.value) for r in records]
    recos = [e for e in events if isinstance(e, RecoEvent)]
    assert len(recos) == len(sessions)
    assert {e.server for e in recos} == {feedback_check.SERVER}
    assert {e.items for e in recos} == {tuple(str(site.slugs[i]) for i in shown)}
    watched = {(e.user_id, e.movie_id) for e in events if isinstance(e, WatchEvent)}
    assert watched == {(s.user_id, str(site.slugs[s.movie])) for s in sessions}
    times = [e.time for e in events]
    assert times == sorted(times)
