"""The scraping detector on small hand-built telemetry: what we served vs what the site logged.

Every stream here is built by hand with known truth (which client enumerated which ids when);
the expected incidents are read off that construction, never from the detector.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from movierec import lake
from movierec.schemas import RECO, SERVED
from movierec.security import scraping
from movierec.settings import REPO_ROOT

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # on a window boundary
SITE, SCRAPER = "127.0.0.1", "127.0.0.2"
USERS = 1_000_000
SITE_USERS = (100_000, USERS)  # the site's traffic; scrapers here enumerate below it, so no id is both
MINUTES = 10
THRESHOLDS = scraping.Thresholds(tolerance_seconds=60.0)  # 60 s windows, 0.25/s, steps <= 1000


def site_stream(seed: int, per_second: float = 1.0, logged: bool = True) -> tuple[list[dict], list[dict]]:
    """The site's own traffic for MINUTES: random users, each answer logged ~0.3 s later (site time
    = UTC here). (served records, reco lines)."""
    rng = np.random.default_rng(seed)
    served, reco = [], []
    count = int(MINUTES * 60 * per_second)
    offsets, users = np.sort(rng.uniform(0, MINUTES * 60, count)), rng.integers(*SITE_USERS, count)
    for offset, user in zip(offsets, users, strict=True):
        moment = T0 + timedelta(seconds=float(offset))
        served.append({"time": moment, "user_id": int(user), "client": SITE, "status": 200})
        if logged:
            reco.append(
                {"time": (moment + timedelta(seconds=0.3)).replace(tzinfo=None), "user_id": int(user)}
            )
    return served, reco


def enumeration(
    first: int, start_minute: int, end_minute: int, per_second: float, step: int = 1
) -> list[dict]:
    """A scraper's answered requests: ids first, first+step, ... at ``per_second``, never logged."""
    count = int((end_minute - start_minute) * 60 * per_second)
    return [
        {
            "time": T0 + timedelta(minutes=start_minute, seconds=n / per_second),
            "user_id": first + n * step,
            "client": SCRAPER,
            "status": 200,
        }
        for n in range(count)
    ]


def frames(served: list[dict], reco: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.DataFrame(served), pd.DataFrame(reco, columns=["time", "user_id"])


def test_a_planted_scraper_is_found_with_its_client_time_and_count() -> None:
    site_served, reco = site_stream(seed=1)
    planted = enumeration(first=5_000, start_minute=3, end_minute=8, per_second=2.0)
    found = scraping.detect(*frames(site_served + planted, reco), THRESHOLDS, "UTC")
    assert found.unlogged == len(planted) == 600
    assert len(found.incidents) == 1
    incident = found.incidents.iloc[0]
    assert incident["client"] == SCRAPER
    assert incident["start"] == pd.Timestamp(T0 + timedelta(minutes=3))
    assert incident["end"] == pd.Timestamp(T0 + timedelta(minutes=8))
    assert incident["detected_at"] == pd.Timestamp(T0 + timedelta(minutes=4))  # after its first window
    assert (incident["answers"], incident["first_user"], incident["last_user"]) == (600, 5_000, 5_599)
    assert incident["windows"] == 5 and incident["peak_rate"] == pytest.approx(2.0)


def test_a_clean_stream_of_the_same_length_raises_nothing() -> None:
    site_served, reco = site_stream(seed=1)
    found = scraping.detect(*frames(site_served, reco), THRESHOLDS, "UTC")
    assert found.unlogged == 0 and found.incidents.empty and not found.windows["flagged"].any()


def test_a_throttled_scraper_with_gaps_between_its_ids_is_still_found() -> None:
    # asking 20/s but answered 1/s: every 20th id comes back
    site_served, reco = site_stream(seed=2)
    planted = enumeration(first=70_000, start_minute=0, end_minute=MINUTES, per_second=1.0, step=20)
    found = scraping.detect(*frames(site_served + planted, reco), THRESHOLDS, "UTC")
    assert found.incidents["client"].tolist() == [SCRAPER]
    assert found.incidents.iloc[0]["answers"] == len(planted)


def test_unlogged_answers_of_random_users_are_no_scraping() -> None:
    # the site's log lost every line (an outage of its logging): many unlogged answers, random ids
    site_served, _ = site_stream(seed=3, per_second=5.0, logged=False)
    found = scraping.detect(*frames(site_served, []), THRESHOLDS, "UTC")
    assert found.unlogged == len(site_served)
    assert found.incidents.empty
    assert found.windows["consecutive_share"].max() < 0.05


def test_an_enumeration_slower_than_the_threshold_is_not_flagged() -> None:
    site_served, reco = site_stream(seed=4)
    slow = enumeration(first=9_000, start_minute=0, end_minute=MINUTES, per_second=0.1)  # 6 a minute
    found = scraping.detect(*frames(site_served + slow, reco), THRESHOLDS, "UTC")
    assert found.unlogged == len(slow) and found.incidents.empty


def test_site_lines_in_the_sites_own_time_zone_are_matched() -> None:
    site_served, reco = site_stream(seed=5)
    berlin = [r | {"time": r["time"] + timedelta(hours=1)} for r in reco]  # 30 Nov: UTC+1
    assert scraping.detect(*frames(site_served, berlin), THRESHOLDS, "Europe/Berlin").unlogged == 0
    assert scraping.detect(*frames(site_served, berlin), THRESHOLDS, "UTC").unlogged == len(site_served)


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError):
        scraping.Thresholds(min_consecutive=1.5)


# --- the command over a lake ------------------------------------------------------------------


def write_lake(home: Path, served: list[dict], reco: list[dict]) -> None:
    from movierec import settings as settings_module

    settings = settings_module.load({"MOVIEREC_HOME": str(home)})
    source = {"partition": 0, "offset": 0}
    served_rows = [
        row | source | {"request_id": f"r{n}", "variant": None, "model_version": "v", "items": "a,b",
                        "fallback": False, "latency_ms": 1.0, "reason": None}
        for n, row in enumerate(served)
    ]  # fmt: skip
    reco_rows = [
        row
        | source
        | {"server": "ours:8082", "status": 200, "items": ["a", "b"], "error": None, "latency_ms": 3}
        for row in reco
    ]
    for name, rows, schema in (("served", served_rows, SERVED), ("reco", reco_rows, RECO)):
        path = lake.hour_dir(settings, name, f"{T0:%Y-%m-%d}", f"{T0:%H}") / lake.batch_file_name("b1")
        lake.write_parquet_atomically(pa.Table.from_pylist(rows, schema=schema), path)


def test_the_command_reports_the_incident_and_writes_its_gauges(tmp_path: Path) -> None:
    site_served, reco = site_stream(seed=6)
    write_lake(tmp_path, site_served + enumeration(5_000, 2, 6, 2.0), reco)
    env = {"PATH": "/usr/bin:/bin", "MOVIEREC_HOME": str(tmp_path), "MOVIEREC_SITE_TIMEZONE": "UTC"}
    window = ["--since", f"{T0:%Y-%m-%dT%H:%M}", "--until", f"{T0 + timedelta(hours=1):%Y-%m-%dT%H:%M}"]
    result = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "security", "scraping", *window],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert (report["served"], report["site_lines"], report["unlogged"]) == (600 + 480, 600, 480)
    [incident] = report["incidents"]
    assert (incident["client"], incident["answers"], incident["first_user"]) == (SCRAPER, 480, 5_000)
    assert incident["start"].startswith(f"{T0 + timedelta(minutes=2):%Y-%m-%dT%H:%M}")
    gauges = (tmp_path / "metrics" / "scraping.prom").read_text()
    assert 'movierec_scraping_incidents{client="127.0.0.2"} 1.0' in gauges
    assert "movierec_scraping_flagged_clients 1.0" in gauges
    saved = json.loads((tmp_path / "reports" / "scraping" / "latest.json").read_text())
    assert saved["incidents"] == report["incidents"]
    assert (tmp_path / "reports" / "scraping" / "latest.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_refuses_an_empty_range(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MOVIEREC_HOME": str(tmp_path)}
    backwards = ["--since", "2026-11-30T10:00", "--until", "2026-11-30T09:00"]
    result = subprocess.run(
        [sys.executable, "-m", "movierec.cli", "security", "scraping", *backwards],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and "is not before" in result.stderr
