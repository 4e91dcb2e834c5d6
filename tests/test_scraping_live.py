"""The scraping detector against the simulator's own scraper on the real path (simulator/scraping_check.py):
``movierec serve`` with its rate limit, live viewers as the site's client, a real broker, the lake.

Windows of 10 s instead of 60 (the thresholds scale with them) keep the runs short; the
full-length table over strengths is bench/bench_scraping.py's.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from movierec import settings as settings_module
from movierec.security import scraping
from simulator import scraping_check
from simulator.scraping_check import Arm
from tests.conftest import free_port
from tests.test_simulator_catalog import small_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
_runs = itertools.count()
THRESHOLDS = scraping.Thresholds(window_seconds=10.0)
TIMING = {"lead": 5.0, "length": 40.0, "tail": 5.0, "thresholds": THRESHOLDS, "minute_seconds": 0.5}


@pytest.fixture
def site(kafka: settings_module.Settings, tmp_path: Path) -> settings_module.Settings:
    number = next(_runs)
    return replace(
        small_settings(tmp_path),
        kafka_bootstrap=kafka.kafka_bootstrap,
        topic=f"scraping.live.{number}",
        served_topic=f"scraping.served.{number}",
        server_port=free_port(),
        server_ops_port=free_port(),
        server_workers=2,
        server_client_rate=2.0,
        server_client_burst=10,
    )


def test_the_planted_scraper_is_found_and_a_clean_run_raises_nothing(site: settings_module.Settings) -> None:
    scraper = Arm("strong", 20.0, "127.0.0.2", 5_000)
    planted = scraping_check.run(site, [scraper], **TIMING)
    [arm] = planted.arms
    assert arm.detected and arm.incidents == 1, planted
    assert arm.seconds_to_detection is not None and 0 < arm.seconds_to_detection <= 40 + 2 * 10
    assert planted.false_alarms == [], "the site's own client is never flagged"
    assert planted.counts["scraper_throttled"] > 0, "the limit held the scraper back meanwhile"
    # it asked 20/s for 40 s; the limit let through at most the burst and 2/s
    assert 0 < arm.answered <= 10 + 2 * (planted.seconds + 1)
    assert planted.site_answers > 0 and planted.counts["site_429"] == 0, "the site's client is never refused"

    clean = scraping_check.run(site, [], **TIMING)
    assert clean.false_alarms == [] and clean.unlogged <= clean.served // 100, clean
    assert clean.site_answers > 0
