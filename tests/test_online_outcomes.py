"""Online metrics from telemetry: which answer a viewing belongs to, at which position, how many minutes,
which served record (model version, variant) a site's reco line was, and the hourly/daily rows.

A small hand-made day in a real lake (Parquet files in the layout ingest writes), so every expected
number below is counted by hand from the rows written, not by the code under test.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from movierec import lake, serving_file
from movierec import settings as settings_module
from movierec.ingest.consume import split_by_hour
from movierec.online import compute
from movierec.online import outcomes as oc
from movierec.schemas import RECO, SERVED, WATCH

DAY = date(2026, 11, 20)
WINDOW = timedelta(minutes=30)


def at(hour: int, minute: int = 0, second: float = 0.0) -> datetime:
    return datetime(2026, 11, 20, hour, minute) + timedelta(seconds=second)


def movies(prefix: str, n: int = 20) -> list[str]:
    return [f"{prefix}+{k}+2001" for k in range(1, n + 1)]


LIST_A = movies("a")
LIST_B = movies("b")
LIST_C1 = ["target+one+1999", *movies("c", 19)]  # target at position 1
LIST_C2 = [*movies("d", 4), "target+two+1998", *movies("d2", 15)]  # target two at position 5
FALLBACK = movies("popular")
LIST_E = ["p+movie+1990", "q+movie+1991", *movies("e", 18)]  # q at position 2


def watch_lines(
    user: int, movie: str, start: datetime, minutes: range, step: timedelta = timedelta(minutes=1)
):
    return [
        {"time": start + i * step, "user_id": user, "movie_id": movie, "minute": m}
        for i, m in enumerate(minutes)
    ]


def write_table(
    settings: settings_module.Settings, name: str, rows: list[dict], schema: pa.Schema, batch: str = "b1"
) -> None:
    for offset, row in enumerate(rows):
        row.setdefault("partition", 0)
        row.setdefault("offset", offset)
    table = pa.Table.from_pylist(rows, schema=schema)
    for (day, hour), part in split_by_hour(table, "time").items():
        path = lake.table_dir(settings, name) / f"date={day}" / f"hour={hour}" / lake.batch_file_name(batch)
        lake.write_parquet_atomically(part, path)


def reco(user: int, moment: datetime, items: list[str], status: int = 200) -> dict:
    return {"time": moment, "user_id": user, "server": "us:8082", "status": status,
            "items": items if status == 200 else [], "error": None if status == 200 else "timeout",
            "latency_ms": 40}  # fmt: skip


def served(request: str, utc: datetime, user: int, items: list[str], version: str, variant: str | None,
           fallback: bool = False) -> dict:  # fmt: skip
    return {"request_id": request, "time": utc.replace(tzinfo=UTC), "user_id": user, "variant": variant,
            "model_version": version, "items": ",".join(items), "fallback": fallback, "latency_ms": 1.5,
            "status": 200, "reason": None}  # fmt: skip


@pytest.fixture
def day_lake(tmp_path: Path) -> settings_module.Settings:
    # the site writes Berlin time (UTC+1 in November); the service records UTC
    settings = settings_module.load(
        {"MOVIEREC_HOME": str(tmp_path), "MOVIEREC_SITE_TIMEZONE": "Europe/Berlin"}
    )
    write_table(settings, "reco", [
        reco(1, at(10, 0, 0.5), LIST_A),            # A: position 3 started, and a movie not listed
        reco(2, at(11), LIST_B),                    # B: its listed movie starts 45 min later: too late
        reco(3, at(12), LIST_C1),                   # C1: the target it lists starts after C2
        reco(3, at(12, 10), LIST_C2),               # C2: lists target two, started at 12:20
        reco(5, at(14), LIST_E),                    # E: p was already playing; q starts
        reco(6, at(15), FALLBACK),                  # F: the fallback list, nothing watched
        reco(7, at(16), [], status=0),              # a failed request: not an answer
        reco(8, at(23, 50), LIST_A),                # G: its start comes after midnight
    ], RECO)  # fmt: skip
    write_table(settings, "watch", [
        # A: position 3, minutes 0..9 with minute 4 logged twice (10 distinct minutes)
        *watch_lines(1, LIST_A[2], at(10, 5), range(10)),
        {"time": at(10, 9, 30), "user_id": 1, "movie_id": LIST_A[2], "minute": 4},
        *watch_lines(1, "browsed+movie+1980", at(10, 20), range(5)),  # not listed: 5 minutes
        *watch_lines(2, LIST_B[0], at(11, 45), range(7)),  # after the window: unattributed
        *watch_lines(3, "target+one+1999", at(12, 15), range(4)),  # belongs to C1 (lists it), not C2
        *watch_lines(3, "target+two+1998", at(12, 20), range(6)),  # C2, position 5
        *watch_lines(4, "lonely+movie+1970", at(13), range(3)),  # user 4 got no answer
        *watch_lines(5, "p+movie+1990", at(13, 50), range(20)),  # began before E: no start for E
        *watch_lines(5, "q+movie+1991", at(14, 5), range(3)),  # E, position 2: 3 minutes
        *watch_lines(5, "q+movie+1991", at(16, 10), range(3, 6)),  # 2 h later: a new viewing, too late
        *watch_lines(8, LIST_A[0], at(23, 55), range(8)),  # G: position 1, crosses midnight
    ], WATCH)  # fmt: skip
    write_table(settings, "served", [
        served("rA", at(9, 0, 0.2), 1, LIST_A, "v2", "treatment"),  # A, 0.3 s before the site's line
        served("rB", at(10), 2, LIST_B[::-1], "v2", "treatment"),  # not the list the site logged
        served("rC1", at(11), 3, LIST_C1, "v2", "control"),
        served("rC2", at(11, 11, 30), 3, LIST_C2, "v2", "control"),  # 90 s off: beyond the tolerance
        served("rE", at(13), 5, LIST_E, "v1", None),
        served("rF", at(14), 6, FALLBACK, "v1", None, fallback=True),
        served("rG", at(22, 50), 8, LIST_A, "v2", "treatment"),
    ], SERVED)  # fmt: skip
    return settings


def outcomes_by_user_time(settings: settings_module.Settings) -> dict[tuple[int, datetime], dict]:
    rows = compute.read_outcomes(settings).to_pylist()
    return {(r["user_id"], r["time"]): r for r in rows}


def test_each_answer_gets_what_followed_it_within_the_window(day_lake: settings_module.Settings) -> None:
    report = compute.compute_answer_outcomes(day_lake)
    assert [d["day"] for d in report["days"]] == ["2026-11-20"]
    assert report["days"][0]["gx"]["success"], report["days"][0]["gx"]
    rows = outcomes_by_user_time(day_lake)
    assert len(rows) == 7  # 8 reco lines, one failed

    a = rows[(1, at(10, 0, 0.5))]
    assert (a["starts"], a["minutes"], a["list_starts"], a["list_minutes"]) == (2, 15, 1, 10)
    assert (a["position"], a["movie_id"], a["start_time"]) == (3, LIST_A[2], at(10, 5))
    assert (a["request_id"], a["model_version"], a["variant"]) == ("rA", "v2", "treatment")
    assert a["personalised"] is None  # no v2 record was a fallback, and no v2 serving file is kept

    b = rows[(2, at(11))]
    assert (b["starts"], b["list_starts"], b["position"], b["movie_id"]) == (0, 0, None, None)
    assert b["request_id"] is None and b["model_version"] is None and b["personalised"] is None

    c1, c2 = rows[(3, at(12))], rows[(3, at(12, 10))]
    assert (c1["list_starts"], c1["position"], c1["list_minutes"]) == (1, 1, 4)
    assert (c2["list_starts"], c2["position"], c2["list_minutes"]) == (1, 5, 6)
    assert c1["request_id"] == "rC1" and c2["request_id"] is None  # 90 s is beyond the 60 s tolerance

    e = rows[(5, at(14))]
    assert (e["starts"], e["list_starts"], e["position"], e["list_minutes"]) == (1, 1, 2, 3)
    f = rows[(6, at(15))]
    assert (f["starts"], f["personalised"], f["model_version"]) == (0, False, "v1")  # its version's fallback
    assert e["personalised"] is True

    g = rows[(8, at(23, 50))]
    assert (g["list_starts"], g["position"], g["list_minutes"]) == (1, 1, 8)  # minutes after midnight count
    assert all(r["complete"] for r in rows.values() if r["time"] < at(23))


def test_hourly_and_daily_metrics_and_the_prometheus_file(day_lake: settings_module.Settings) -> None:
    compute.compute_answer_outcomes(day_lake)
    report = compute.compute_online_metrics(day_lake)
    assert report["days"][0]["gx"]["success"], report["days"][0]["gx"]
    rows = compute.read_metrics(day_lake).to_pylist()
    day_all = next(r for r in rows if r["granularity"] == "day" and r["scope"] == "all")
    assert day_all["answers"] == 7 and day_all["users"] == 6
    # followed: A, C1, C2, E, G of 7 answers; first positions 3, 1, 5, 2, 1
    assert day_all["follow_rate"] == pytest.approx(5 / 7)
    assert day_all["mean_position"] == pytest.approx((3 + 1 + 5 + 2 + 1) / 5)
    assert day_all["list_minutes"] == 10 + 4 + 6 + 3 + 8
    # viewings that started on the day: A's two, B's late one, C's two, user 4's, p, q twice, G's = 10;
    # from a list just shown: A's, C1's, C2's, E's q, G's = 5
    assert (day_all["watch_starts"], day_all["list_starts"]) == (10, 5)
    # the fallback is known for v1 only (a record flagged fallback): E differs from it, F is it
    assert (day_all["personalised_answers"], day_all["personalised_known"]) == (1, 2)

    treatment = next(
        r
        for r in rows
        if r["granularity"] == "day" and r["scope"] == "version" and r["variant"] == "treatment"
    )
    assert (treatment["model_version"], treatment["answers"], treatment["followed_answers"]) == ("v2", 2, 2)
    unattributed = next(
        r for r in rows
        if r["granularity"] == "day" and r["scope"] == "version" and r["model_version"] is None
    )  # fmt: skip
    assert unattributed["answers"] == 2  # B (another list) and C2 (too far in time)
    hour_10 = next(r for r in rows if r["granularity"] == "hour" and r["scope"] == "all"
                   and r["period_start"] == at(10))  # fmt: skip
    assert (hour_10["answers"], hour_10["watch_starts"], hour_10["list_starts"]) == (1, 2, 1)

    prom = compute.prom_path(day_lake).read_text()
    assert 'movierec_online_answers{period="day",model_version="all",variant="all"} 7.0' in prom
    assert 'movierec_online_follow_rate{period="day",model_version="v2",variant="treatment"} 1.0' in prom
    # the data ends at 00:02 (G's last line), before G's window closes (00:20): the latest hour whose
    # windows all closed is 15:00, F's hour (v1, no experiment)
    assert 'movierec_online_answers{period="hour",model_version="v1",variant="none"} 1.0' in prom


def test_a_rerun_replaces_and_only_changed_days_are_recomputed(day_lake: settings_module.Settings) -> None:
    first = compute.compute_answer_outcomes(day_lake)
    again = compute.compute_answer_outcomes(day_lake)
    assert len(first["days"]) == 1 and again["days"] == [] and again["unchanged_days"] == 1
    # a late watch line of the day's window arrives: the day is recomputed, replacing its file
    write_table(day_lake, "watch", watch_lines(2, LIST_B[1], at(11, 20), range(2)), WATCH, batch="b2")
    third = compute.compute_answer_outcomes(day_lake)
    assert [d["day"] for d in third["days"]] == ["2026-11-20"]
    rows = outcomes_by_user_time(day_lake)
    assert len(rows) == 7 and rows[(2, at(11))]["position"] == 2
    files = list(lake.table_dir(day_lake, "answer_outcome").rglob("*.parquet"))
    assert len(files) == 1


# --- the pure pieces, at their edges ------------------------------------------------------------


def frame_of_answers(rows: list[tuple[int, int, datetime, list[str]]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=oc.ANSWER_COLUMNS)


def test_the_window_is_open_at_the_answer_and_closed_at_its_end() -> None:
    answers = frame_of_answers([(0, 1, at(10), ["x+1+2000", "y+1+2000"])])
    views = pd.DataFrame({
        "user_id": [1, 1, 1], "movie_id": ["x+1+2000", "y+1+2000", "x+1+2000"],
        "start": [at(10), at(10, 30), at(10, 30, 0.001)], "minutes": [5, 7, 9],
    })  # fmt: skip
    attributed = oc.attribute(answers, views, WINDOW)
    owner = attributed["answer"].tolist()
    assert math.isnan(owner[0]) and owner[1] == 0 and math.isnan(owner[2])
    assert attributed["position"].tolist()[1] == 2


def test_viewings_split_on_a_long_pause_and_count_distinct_minutes() -> None:
    lines = pd.DataFrame(
        watch_lines(1, "m+1+2000", at(10), range(3))
        + watch_lines(1, "m+1+2000", at(10, 3), [2, 3])  # minute 2 again: 4 distinct
        + watch_lines(1, "m+1+2000", at(11), range(4, 6))  # 55 min pause: a new viewing
    )
    views = oc.viewings(lines)
    assert views["start"].tolist() == [at(10), at(11)]
    assert views["minutes"].tolist() == [4, 2]


def test_site_times_are_read_in_the_site_zone_across_a_dst_change() -> None:
    times = pd.Series([datetime(2026, 3, 29, 1, 30), datetime(2026, 3, 29, 3, 30)])  # Berlin: 02:00 -> 03:00
    utc = oc.site_time_to_utc(times, "Europe/Berlin")
    assert utc.dt.tz_localize(None).tolist() == [datetime(2026, 3, 29, 0, 30), datetime(2026, 3, 29, 1, 30)]


def test_a_list_is_the_same_whether_the_site_or_the_service_wrote_it() -> None:
    assert (
        oc.list_key("a+1+2000, b+2+2001")
        == oc.list_key("a+1+2000,b+2+2001")
        == oc.list_key(["a+1+2000", "b+2+2001"])
    )
    assert oc.list_key(None) == ""


def test_group_lines_of_a_kept_serving_file_do_not_count_as_personalised(tmp_path: Path) -> None:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    version, fallback, group = "20261120T000000Z", "f+1+2000,f+2+2001", "g+1+2000,g+2+2001"
    meta = {"model_version": version, "fallback": fallback, "group_lines": json.dumps([group])}
    serving_file.write(serving_file.file_path(settings.serving_dir, version), [([1], [group])], meta)
    fallbacks, groups = compute.serving_lists(settings, {version, "not-a-serving-id"})
    assert fallbacks == {version: fallback} and groups == {version: frozenset({group})}

    lines = pd.Series([fallback, "g+1+2000, g+2+2001", "own+1+1999,g+1+2000", "own+1+1999"])
    versions = pd.Series([version, version, version, "unknown"])
    # the fallback, a group line (spaced as the site writes it), a user's own list, a version unknown
    with_groups = oc.personalised(lines, versions, fallbacks, groups)
    assert with_groups.iloc[:3].tolist() == [False, False, True] and pd.isna(with_groups.iloc[3])
    assert oc.personalised(lines, versions, fallbacks).iloc[:3].tolist() == [False, True, True]


def test_answers_of_a_day_without_served_records_are_kept_unmatched(tmp_path: Path) -> None:
    settings = settings_module.load({"MOVIEREC_HOME": str(tmp_path)})
    write_table(settings, "reco", [reco(1, at(9), LIST_A)], RECO)
    compute.compute_answer_outcomes(settings)
    (row,) = compute.read_outcomes(settings).to_pylist()
    assert row["model_version"] is None and row["starts"] == 0 and row["complete"] is False
    assert pq.read_schema(compute.outcome_path(settings, DAY)).metadata[compute.INPUTS_KEY]
