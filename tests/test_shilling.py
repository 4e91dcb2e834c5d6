"""The rating-spam detector: its pure rules on hand-built days, then on a small simulated lake against
what the simulator planted (the injection log is the answer key, never the detector's input), the
``movierec security shilling`` command, and the training-time defence in prepare with real Spark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from movierec import lake
from movierec import settings as settings_module
from movierec.security import shilling, shilling_check
from simulator import spam_check
from simulator.commands import load_history

CLI = str(Path(sys.executable).parent / "movierec")
D1 = date(2026, 11, 20)
TEST_DAY = D1 + timedelta(days=3)
RING = list(range(1001, 1007))


# --- hand-built days --------------------------------------------------------------------------------


class Day:
    """Rows of rate and watch_session, added event by event."""

    def __init__(self) -> None:
        self.rates: list[dict[str, Any]] = []
        self.sessions: list[dict[str, Any]] = []

    def view(
        self, day: date, hour: int, user: int, movie: str, rating: int | None, minutes: int = 90
    ) -> None:
        moment = shilling.day_start(day) + timedelta(hours=hour, minutes=user % 60)
        self.sessions.append(
            {"user_id": user, "movie_id": movie, "first_time": moment, "minutes_seen": minutes}
        )
        if rating is not None:
            self.rates.append(
                {
                    "time": moment + timedelta(minutes=minutes),
                    "user_id": user,
                    "movie_id": movie,
                    "rating": rating,
                }
            )

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        rates = pd.DataFrame(self.rates, columns=shilling.RATE_COLUMNS)
        return rates, pd.DataFrame(self.sessions, columns=shilling.SESSION_COLUMNS)


def organic(days: int = 3, first: date = D1) -> Day:
    """``days`` of ordinary traffic: 20 regulars watching three movies a day, and two newcomers a day
    who watch a few minutes of the popular movie and give it a 5 (the organic baseline of
    suspicious-looking raters)."""
    data = Day()
    newcomer = 500
    for offset in range(days + 1):  # the test day gets ordinary traffic too
        day = first + timedelta(days=offset)
        for user in range(1, 21):
            for k in range(3):
                data.view(day, 8 + k, user, f"m{(user + k + offset) % 10}", 3 + (user + k) % 3)
        for _ in range(2):
            newcomer += 1
            data.view(day, 20, newcomer, "popular", 5, minutes=5)
    return data


def verdict_of(
    data: Day, day: date = TEST_DAY, exclude: set[int] | None = None, **rules: Any
) -> shilling.Verdict:
    rates, sessions = data.frames()
    chosen = shilling.Rules(**rules)
    start = shilling.day_start(day)
    present = {t.date() for t in pd.concat([rates["time"], sessions["first_time"]])}
    days = shilling.baseline_days_before(start, present, chosen)
    baseline = shilling.baseline_counts(rates, sessions, days, exclude or set())
    return shilling.detect(
        rates, sessions, start, start + timedelta(days=1), baseline=baseline, baseline_days=days, rules=chosen
    )


def test_a_ring_of_new_accounts_rating_one_movie_5_is_found_and_nobody_else() -> None:
    data = organic()
    for account in RING:  # each rates the obscure movie 5 after two minutes, twice
        data.view(TEST_DAY, 14, account, "obscure", 5, minutes=2)
        data.view(TEST_DAY, 16, account, "obscure", 5, minutes=2)
    data.view(TEST_DAY, 15, 3, "obscure", 5)  # a regular who likes it: has a history
    data.view(TEST_DAY, 15, 900, "obscure", 5)  # a newcomer who also watched another movie
    data.view(TEST_DAY, 17, 900, "m1", None)
    data.view(TEST_DAY, 15, 901, "obscure", 4)  # a newcomer, not at the extreme
    data.view(TEST_DAY, 15, 902, "obscure", 5, minutes=95)  # a newcomer who watched it before rating
    data.view(TEST_DAY - timedelta(days=1), 23, 903, "obscure", None, minutes=55)  # began last night,
    data.view(TEST_DAY, 0, 903, "obscure", 5, minutes=3)  # finished after midnight, then rated it
    for newcomer in range(950, 956):  # six newcomers rating the popular movie 5: its normal is 2 a day
        data.view(TEST_DAY, 21, newcomer, "popular", 5, minutes=5)

    verdict = verdict_of(data)

    assert verdict.status == "ok"
    assert verdict.baseline_days == (D1, D1 + timedelta(days=1), D1 + timedelta(days=2))
    [target] = verdict.targets
    assert (target.movie_id, target.direction) == ("obscure", shilling.PUSH)
    assert list(target.accounts) == RING
    assert [(a.ratings, a.minutes) for a in target.ring] == [(2, 4)] * len(RING)
    assert target.ring_ratings == 12 and target.ratings == 17  # and the regular's and four newcomers'
    assert verdict.flagged_accounts == RING
    assert verdict.tested_movies == 12  # m0..m9, popular, obscure
    # without the consumption rule the newcomer who watched 95 minutes before the 5 would count
    assert 902 in verdict_of(data, max_minutes_per_rating=None).targets[0].accounts


def test_a_nuke_ring_rating_1_is_found_as_a_nuke() -> None:
    data = organic()
    for account in RING:
        data.view(TEST_DAY, 14, account, "m4", 1, minutes=1)
    [target] = verdict_of(data).targets
    assert (target.movie_id, target.direction, list(target.accounts)) == ("m4", shilling.NUKE, RING)


def test_no_alarm_on_an_ordinary_day() -> None:
    verdict = verdict_of(organic())
    assert verdict.status == "ok" and verdict.targets == ()
    assert verdict.suspicious_raters == 2  # the day's two newcomers: counted, below the movie's normal


def test_a_ring_smaller_than_min_accounts_is_not_flagged() -> None:
    data = organic()
    for account in RING[:4]:
        data.view(TEST_DAY, 14, account, "obscure", 5, minutes=2)
    # four raters from a movie with no history beat a loose alpha, but are too few to flag
    assert verdict_of(data, alpha=0.1).targets == ()
    assert [t.movie_id for t in verdict_of(data, alpha=0.1, min_accounts=4).targets] == ["obscure"]


def test_too_little_history_gives_no_verdict() -> None:
    data = organic(days=1)
    for account in RING:
        data.view(D1 + timedelta(days=1), 14, account, "obscure", 5, minutes=2)
    verdict = verdict_of(data, D1 + timedelta(days=1))
    assert verdict.status == "insufficient_history" and verdict.targets == ()
    assert verdict.baseline_days == (D1,)


def test_a_ring_flagged_before_is_left_out_of_the_baseline() -> None:
    data = organic()
    for day in (TEST_DAY - timedelta(days=1), TEST_DAY):  # the same ring yesterday and today
        for account in RING:
            data.view(day, 14, account, "obscure", 5, minutes=2)
    # yesterday's six count as obscure's normal unless they were flagged then
    assert verdict_of(data).targets == ()
    assert list(verdict_of(data, exclude=set(RING)).targets[0].accounts) == RING


def test_tail_p_value_is_the_negative_binomial_upper_tail() -> None:
    rules = shilling.Rules(prior_count=1.0, prior_days=1.0)
    # no suspicious rater in two baseline days: r = 1 (a geometric), p = 3/4, P(X >= k) = (1/4)^k
    for k in (1, 3, 8):
        assert shilling.tail_p_value(k, 0, 2, rules) == pytest.approx(0.25**k)
    # r = 1 + 2, p = 1/2: P(X >= 1) = 1 - P(0) = 1 - p^r
    assert shilling.tail_p_value(1, 2, 0, rules) == pytest.approx(1 - 0.5**3)


# --- a small simulated lake, against the simulator's truth ------------------------------------------

SMALL = {"MOVIEREC_SCALE_USERS": "2000", "MOVIEREC_SCALE_MOVIES": "300"}
LEARNING = {
    "MOVIEREC_SPARK_MASTER": "local[2]",
    "MOVIEREC_SPARK_DRIVER_MEMORY": "1g",
    "MOVIEREC_ALS_ITERATIONS": "5",
    "MOVIEREC_TEST_DAYS": "1",
}
RING_START = spam_check.START + timedelta(days=3, hours=6)


def small_settings(home: Path) -> settings_module.Settings:
    return settings_module.load({"MOVIEREC_HOME": str(home), **SMALL, **LEARNING})


@pytest.fixture(scope="module")
def ring_lake(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[settings_module.Settings, spam_check.Planted]:
    settings = small_settings(tmp_path_factory.mktemp("ring"))
    strong = spam_check.STRENGTHS[-1]
    log = spam_check.simulated_lake(
        settings,
        load_history(settings),
        days=5,
        sessions_per_day=3000,
        scenarios=spam_check.ring(strong, RING_START),
    )
    planted = spam_check.planted(log)
    assert planted is not None and len(planted.accounts) == strong.accounts
    return settings, planted


@pytest.fixture(scope="module")
def clean_lake(tmp_path_factory: pytest.TempPathFactory) -> settings_module.Settings:
    settings = small_settings(tmp_path_factory.mktemp("clean"))
    assert spam_check.simulated_lake(settings, load_history(settings), days=5, sessions_per_day=3000) == []
    return settings


@pytest.mark.slow
def test_the_planted_ring_and_target_are_found_within_the_day_it_starts(
    ring_lake: tuple[settings_module.Settings, spam_check.Planted],
) -> None:
    settings, planted = ring_lake
    found = spam_check.detection(settings, planted)
    assert found.detected
    assert found.first_detection is not None and found.first_detection.date() == RING_START.date()
    assert found.found_accounts == len(planted.accounts)
    assert found.false_accounts == set() and found.false_targets == set() and found.false_alarm_windows == 0


@pytest.mark.slow
def test_no_false_alarm_on_a_clean_stream_of_the_same_length(clean_lake: settings_module.Settings) -> None:
    found = spam_check.detection(clean_lake, None)
    assert found.windows >= 48  # hourly checks of the days with enough history
    assert found.false_alarm_windows == 0 and found.false_accounts == set() and found.false_targets == set()
    assert all(day["targets"] == [] for day in found.daily)


def run_cli(settings: settings_module.Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOVIEREC_HOME": str(settings.home), **SMALL}
    return subprocess.run(
        [CLI, "security", "shilling", *args], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_the_command_reports_the_ring_stores_its_flags_and_exports_gauges(
    ring_lake: tuple[settings_module.Settings, spam_check.Planted],
) -> None:
    settings, planted = ring_lake
    day = RING_START.date().isoformat()
    done = run_cli(settings, "--day", day, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [target] = report["targets"]
    assert target["movie_id"] == planted.target and set(target["accounts"]) == planted.accounts
    flags = pq.read_table(lake.shilling_flags_path(settings, day))
    assert set(flags.column("user_id").to_pylist()) == planted.accounts
    assert set(flags.column("movie_id").to_pylist()) == {planted.target}
    assert report["gx"] is True
    again = run_cli(settings, "--day", day, "--strict")  # a re-run replaces the day's flags
    assert again.returncode == 1 and f"TARGET {planted.target} (push): 50 accounts" in again.stdout
    assert pq.read_table(lake.shilling_flags_path(settings, day)).num_rows == flags.num_rows
    gauges = (settings.home / "metrics" / shilling_check.TEXTFILE).read_text()
    assert "movierec_shilling_targets 1.0" in gauges and "movierec_shilling_flagged_accounts 50.0" in gauges
    before = run_cli(settings, "--day", (RING_START.date() - timedelta(days=1)).isoformat())
    assert before.returncode == 0 and "no ring found" in before.stdout
    later = (RING_START.date() + timedelta(days=1)).isoformat()
    looked = run_cli(settings, "--day", later, "--no-store", "--json")
    assert set(json.loads(looked.stdout)["targets"][0]["accounts"]) == planted.accounts
    assert not lake.shilling_flags_path(settings, later).exists()
    empty = run_cli(settings, "--day", "2026-10-01")
    assert empty.returncode == 2 and "no rate or watch_session rows" in empty.stderr


@pytest.mark.slow
def test_the_defence_keeps_the_target_out_of_served_lists(
    ring_lake: tuple[settings_module.Settings, spam_check.Planted],
) -> None:
    from movierec.models import candidates, versions
    from spark_jobs.session import build_session

    settings, planted = ring_lake
    spam_check.flag_every_day(settings)
    fitting = [c for c in candidates.default_candidates(settings, rank=16) if c.name == "als_r16"]
    spark = build_session(settings, "test-shilling")
    try:
        served = {
            defence: spam_check.served_version(settings, spark, version, fitting, defence=defence)
            for defence, version in ((False, "20261125T000000Z"), (True, "20261126T000000Z"))
        }
    finally:
        spark.stop()
    users = int(SMALL["MOVIEREC_SCALE_USERS"])
    without, with_defence = (spam_check.exposure(served[d], planted.target, users) for d in (False, True))
    # the ring's accounts are out of the defended model's data, and in the undefended one's
    known = {
        d: set(
            pq.read_table(versions.model_dir(settings, version) / versions.USERS_FILE)["user_id"].to_pylist()
        )
        for d, version in ((False, "20261125T000000Z"), (True, "20261126T000000Z"))
    }
    assert planted.accounts <= known[False] and not planted.accounts & known[True]
    assert without.with_target > 2 * max(with_defence.with_target, 1), (without, with_defence)


def test_the_dag_task_on_an_empty_lake_has_nothing_to_do(tmp_path: Path) -> None:
    settings = small_settings(tmp_path)
    assert shilling_check.check_recent(settings, days_back=1)["day"] is None
    with pytest.raises(shilling_check.ShillingError, match="no ratings"):
        shilling_check.check_day(settings)
    assert not lake.table_dir(settings, "shilling_flags").exists()


def test_a_simulated_lake_split_into_batches_holds_what_one_batch_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_lake: settings_module.Settings
) -> None:
    """A week at full scale is too much text for one Arrow table, so the lake is committed in parts."""
    settings = small_settings(tmp_path)
    monkeypatch.setattr(spam_check, "LINES_PER_BATCH", 7_000)
    spam_check.simulated_lake(settings, load_history(settings), days=5, sessions_per_day=3000)
    assert len(list(lake.manifests_of(settings).glob("*.json"))) > 1
    assert len(list(lake.manifests_of(clean_lake).glob("*.json"))) == 1
    keys = {"raw": ["partition", "offset"], "watch_session": ["user_id", "movie_id", "first_time"]}
    for table, key in keys.items():
        split = lake.read_table(settings, table).sort_by([(k, "ascending") for k in key])
        whole = lake.read_table(clean_lake, table).sort_by([(k, "ascending") for k in key])
        assert split.num_rows > 7_000 and split.equals(whole), table
