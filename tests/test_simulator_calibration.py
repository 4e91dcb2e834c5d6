"""The calibration statistics on small hand-made data, and the report read from lines and a lake."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from movierec import lake
from movierec.movielog import RecoEvent, WatchEvent, format_event
from movierec.schemas import WATCH_SESSION
from simulator import calibration
from simulator.calibration_report import (
    TARGETS,
    Interactions,
    from_lake,
    from_lines,
    in_range,
    measure,
    render,
)
from tests.test_simulator_catalog import small_settings

CLI = str(Path(sys.executable).parent / "movierec")

# --- concentration -------------------------------------------------------------------------


def test_gini_of_equal_and_of_all_on_one() -> None:
    assert calibration.gini(np.array([3, 3, 3, 3])) == pytest.approx(0.0)
    # one of n items holds everything: (n - 1) / n
    assert calibration.gini(np.array([0, 0, 0, 10])) == pytest.approx(0.75)


def test_gini_is_the_mean_absolute_difference_over_twice_the_mean() -> None:
    # 1, 2, 3, 4: ordered pairs differ by 20 in all; 2 n^2 mean = 2 * 16 * 2.5 = 80
    assert calibration.gini(np.array([4, 1, 3, 2])) == pytest.approx(20 / 80)


def test_gini_counts_items_never_seen() -> None:
    assert calibration.gini(np.array([5, 5, 0, 0])) > calibration.gini(np.array([5, 5]))


def test_item_counts_include_the_items_never_seen() -> None:
    assert calibration.item_counts(np.array([2, 0, 2]), 4).tolist() == [1, 0, 2, 0]


def test_top_k_share_is_the_share_of_the_k_most_popular() -> None:
    counts = np.array([5, 1, 10, 4])
    assert calibration.top_k_share(counts, 1) == pytest.approx(10 / 20)
    assert calibration.top_k_share(counts, 2) == pytest.approx(15 / 20)
    assert calibration.top_k_share(counts, 10) == pytest.approx(1.0)


def test_top_fraction_share_takes_that_fraction_of_the_catalog() -> None:
    counts = np.zeros(200)
    counts[:3] = [50, 30, 20]
    counts[3:] = 1  # 197 more
    # 1% of 200 movies is 2 movies: 80 of 297; 10% is 20: 100 + 17
    assert calibration.top_fraction_share(counts, 0.01) == pytest.approx(80 / 297)
    assert calibration.top_fraction_share(counts, 0.10) == pytest.approx(117 / 297)


def test_share_at_most_counts_items_with_few_interactions_including_none() -> None:
    assert calibration.share_at_most(np.array([0, 5, 6, 10]), 5) == pytest.approx(0.5)
    assert calibration.share_at_most(np.array([0, 5, 6, 10]), 6) == pytest.approx(0.75)


# --- split, EASE, recall ---------------------------------------------------------------------


def test_temporal_split_holds_out_the_last_fifth_of_users_with_enough_history() -> None:
    # user 1: 5 items (1 held out), user 2: 4 items (too few: none), user 3: 10 items (2 held out)
    users = np.array([1] * 5 + [2] * 4 + [3] * 10)
    times = np.concatenate([[50, 10, 40, 20, 30], [1, 2, 3, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1, 10]])
    train, test = calibration.temporal_split(users, times, min_items=5)
    assert (train == ~test).all()
    assert np.flatnonzero(test).tolist() == [0, 9, 18]  # time 50 of user 1; 9 and 10 of user 3


def test_ease_weights_of_a_hand_computed_example() -> None:
    # X = [[1, 1], [1, 0]], lambda 1: G = [[3, 1], [1, 2]], P = G^-1 = [[.4, -.2], [-.2, .6]],
    # B_ij = -P_ij / P_jj: B_01 = .2 / .6, B_10 = .2 / .4
    x = sp.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0]]))
    assert calibration.ease_weights(x, lam=1.0) == pytest.approx(np.array([[0.0, 1 / 3], [0.5, 0.0]]))


def test_ease_weights_are_a_ridge_regression_of_each_item_on_the_others() -> None:
    # EASE's closed form solves, column by column, min |x_j - X_-j b|^2 + lambda |b|^2
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 6)) < 0.4).astype(float)
    lam = 3.0
    weights = calibration.ease_weights(sp.csr_matrix(dense), lam=lam)
    for j in range(6):
        others = [i for i in range(6) if i != j]
        a = dense[:, others]
        b = np.linalg.solve(a.T @ a + lam * np.eye(5), a.T @ dense[:, j])
        assert weights[others, j] == pytest.approx(b)
        assert weights[j, j] == 0.0


def test_recall_excludes_seen_items_and_divides_by_at_most_k() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], float))
    held = sp.csr_matrix(np.array([[0, 1, 0, 0, 1], [1, 1, 1, 0, 0]], float))
    # user 0: top-2 without item 0 is {1, 2}: 1 hit of min(2, 2); user 1: {4, 3}: 0 of 2
    assert calibration.recall_at_k(scores, seen, held, k=2).tolist() == pytest.approx([0.5, 0.0])
    # k = 4: user 0 {1, 2, 3, 4}: 2 of 2; user 1 {4, 3, 2, 1}: 2 of 3
    assert calibration.recall_at_k(scores, seen, held, k=4).tolist() == pytest.approx([1.0, 2 / 3])


def test_ease_finds_what_goes_with_a_users_movies_where_popularity_cannot() -> None:
    # movies: 0 = A, 1 = B (watched with A), 2 = C, 3 = D (the most popular, watched alone)
    users, items, times = [], [], []

    def watch(user: int, sequence: list[int]) -> None:
        for t, item in enumerate(sequence):
            users.append(user)
            items.append(item)
            times.append(t)

    for u in range(30):  # train-only users (2 movies, fewer than min_items): A and B go together
        watch(u, [0, 1])
    for u in range(30, 100):
        watch(u, [2])
    for u in range(100, 200):
        watch(u, [3])
    for u in range(200, 210):  # evaluated: A, C, then B (the last third held out)
        watch(u, [0, 2, 1])
    ref = calibration.reference_cf(
        np.array(users), np.array(items), np.array(times), 4, lam=1.0, k=1, min_items=3, min_item_count=1
    )
    assert (ref.eval_users, ref.test_pairs, ref.ease_items) == (10, 10, 4)
    assert ref.ease_recall == pytest.approx(1.0)  # B goes with A
    assert ref.popularity_recall == 0.0  # D (100) is the most popular unseen movie, not B (30)


def test_no_user_with_enough_history_gives_no_ratio() -> None:
    ref = calibration.reference_cf(np.array([1, 1, 2]), np.array([0, 1, 0]), np.array([0, 1, 0]), 2)
    assert ref.eval_users == 0 and np.isnan(ref.ratio)


def test_ease_leaves_out_rare_movies_but_they_still_count_as_misses() -> None:
    # the held-out movie 2 has one training interaction: below min_item_count, EASE cannot list it
    users = np.array([1, 1, 1, 2, 2, 3])
    items = np.array([0, 1, 2, 0, 1, 2])
    times = np.array([0, 1, 2, 0, 1, 0])
    ref = calibration.reference_cf(users, items, times, 3, lam=1.0, k=1, min_items=3, min_item_count=2)
    assert (ref.eval_users, ref.ease_items) == (1, 2)
    assert ref.ease_recall == 0.0
    assert ref.popularity_recall == 1.0  # movie 2 (1 viewer) is the only unseen one


# --- the report ------------------------------------------------------------------------------

T0 = datetime(2026, 11, 20, 12, 0, 0)
SLUGS = np.array(["a+movie+2001", "b+movie+2002", "c+movie+2003"], dtype=object)


def lines_of_sessions() -> list[str]:
    listed = ("a+movie+2001", "b+movie+2002")

    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    events = [
        RecoEvent(at(0), 1, "site-baseline:8082", 200, listed, None, 20),
        WatchEvent(at(10), 1, "a+movie+2001", 0),  # from the list
        WatchEvent(at(70), 1, "a+movie+2001", 1),
        RecoEvent(at(100), 2, "site-baseline:8082", 200, listed, None, 20),
        WatchEvent(at(110), 2, "c+movie+2003", 0),  # not from the list
        WatchEvent(at(200), 1, "a+movie+2001", 0),  # user 1 again, no list shown before: not from it
        WatchEvent(at(300), 3, "zzz+1999", 0),  # a movie the catalog does not know: dropped
    ]
    return [format_event(e) for e in events] + ["garbage line"]


def test_lines_give_one_interaction_per_user_and_movie_at_its_first_watch() -> None:
    data = from_lines(lines_of_sessions(), SLUGS, "hand-made")
    pairs = sorted(zip(data.users.tolist(), data.items.tolist(), data.times.tolist(), strict=True))
    ms = int(T0.timestamp() * 1000)
    assert pairs == [(1, 0, ms + 10_000), (2, 2, ms + 110_000)]
    assert (data.sessions, data.starts_from_list) == (3, 1)


def test_the_lake_gives_the_first_time_of_each_user_and_movie(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)
    day = [T0, T0 + timedelta(days=1)]
    for moment, first in zip(day, [T0 + timedelta(minutes=5), T0 + timedelta(days=1)], strict=True):
        table = pa.table(
            {
                "user_id": [1, 2, 2],
                "movie_id": ["b+movie+2002", "b+movie+2002", "nope+2000"],
                "first_time": [first, first, first],
                "last_time": [first, first, first],
                "max_minute": [3, 3, 3],
                "minutes_seen": [4, 4, 4],
            }
        ).cast(WATCH_SESSION)
        lake.write_parquet_atomically(
            table, lake.partition_dir(settings, "watch_session", moment) / "part-x.parquet"
        )
    data = from_lake(settings, SLUGS)
    pairs = sorted(zip(data.users.tolist(), data.items.tolist(), data.times.tolist(), strict=True))
    ms = int((T0 + timedelta(minutes=5)).timestamp() * 1000)
    assert pairs == [(1, 1, ms), (2, 1, ms)]


def test_the_table_marks_what_is_inside_and_outside_the_real_ranges() -> None:
    rng = np.random.default_rng(3)
    n = 400
    users = np.repeat(np.arange(300), 6)
    items = rng.zipf(1.6, len(users)) % n
    stats = measure(
        Interactions(users=users, items=items, times=np.arange(len(users)), n_items=n, source="zipf")
    )
    table = render(stats)
    assert f"{stats['top20']:.1%}" in table
    for key in ("top20", "top1pct", "top10pct", "gini", "at_most_5", "ease_ratio"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {TARGETS[key].label}"))
        assert row.endswith("| in range |") == in_range(key, stats[key])


def test_the_command_prints_the_table_and_draws_the_plot(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "MOVIEREC_HOME": str(tmp_path),
        "MOVIEREC_SCALE_USERS": "5000",
        "MOVIEREC_SCALE_MOVIES": "400",
    }
    plot = tmp_path / "calibration.png"
    args = ["world", "calibration", "--days", "1", "--sessions-per-day", "3000", "--end", "2026-11-20T00:00"]
    result = subprocess.run(
        [CLI, *args, "--plot", str(plot)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(TARGETS)  # the header, then one row per statistic
    assert all(row.endswith(("| in range |", "| **outside** |")) for row in rows[1:])
    assert "backfill lines, 1 days to 2026-11-20 00:00, 3,000 sessions/day" in result.stdout
    assert "ranking by the ground truth" in result.stdout
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_the_command_refuses_a_bad_end_time(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "MOVIEREC_HOME": str(tmp_path)}
    result = subprocess.run(
        [CLI, "world", "calibration", "--end", "yesterday"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--end" in result.stderr
