"""Catalog sync against the real simulated catalog API: what is missing is fetched once, politely.

The API is ``simulator.api.serve`` in a subprocess on a free port (what ``movierec
world api`` runs) over a small world; faults are switched through its admin route.
Events are put in a private lake with the lake's own layout and schemas.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from movierec import lake, schemas
from movierec import settings as settings_module
from movierec.ingest import catalog_sync
from movierec.ingest.catalog_sync import CatalogDelayed, RetryPolicy, TokenBucket
from movierec.schemas import RATE, RECO, WATCH
from movierec.settings import Settings
from simulator.catalog import World, load_world
from tests.catalog_api import running_catalog_api
from tests.conftest import free_port
from tests.test_simulator_catalog import USERS, small_settings

API_RATE, API_BURST = 20, 10  # the API's limit per client in these tests
FAST = RetryPolicy(attempts=8, base_delay=0.05, max_delay=0.5, timeout=5.0)  # quick, for faults
_clients = itertools.count()


@dataclass
class Api:
    url: str
    world: World
    admin: httpx.Client

    def faults(self, **changes: object) -> None:
        assert self.admin.post(f"{self.url}/_faults", json=changes).status_code == 200

    def clear(self) -> None:
        assert self.admin.delete(f"{self.url}/_faults").status_code == 200


@contextmanager
def running_api(home: Path, rate: float = API_RATE, burst: int = API_BURST) -> Iterator[Api]:
    """The simulator's real catalog API over the small world, in a subprocess, on a free port."""
    settings = small_settings(home)
    world = load_world(settings)  # built here, loaded from the cache by the server
    with running_catalog_api(settings, rate, burst) as url, httpx.Client(timeout=10) as admin:
        yield Api(url, world, admin)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("catalog-api")) as running:
        yield running


@pytest.fixture
def faults(api: Api) -> Iterator[Api]:
    yield api
    api.clear()


def sync_settings(home: Path, api_url: str, **extra: str) -> Settings:
    """Settings against ``api_url``; the sweep of unseen users is off unless ``extra`` turns it on
    (these tests count what is fetched of the ids the events hold; the sweep has its own test)."""
    return settings_module.load(
        {"MOVIEREC_HOME": str(home), "MOVIEREC_API_URL": api_url, "MOVIEREC_CATALOG_RATE": "10",
         "MOVIEREC_CATALOG_SWEEP_USERS": "false", **extra}
    )  # fmt: skip


def client() -> str:
    """A fresh client id: each test starts with a full rate-limit bucket at the API."""
    return f"catalog-test-{next(_clients)}"


# --- events in the lake -------------------------------------------------------------


MOMENT = datetime(2026, 11, 28, 10, 15)


def write_events(
    settings: Settings, batch: str, users: list[int], movies: list[str], moment: datetime = MOMENT
) -> None:
    """Watch, rate and reco rows at ``moment`` mentioning exactly ``users`` and ``movies`` (some
    movies only in reco lists, some users only in rate or reco lines)."""
    third = max(1, len(users) // 3)
    watch_users, rate_users, reco_users = users[:third], users[third : 2 * third], users[2 * third :]
    watch_movies, rate_movies, reco_movies = movies[:2], movies[2:3], movies[3:]
    offsets = itertools.count()
    watch = [
        {"time": moment, "user_id": u, "movie_id": m, "minute": k, "partition": 0, "offset": next(offsets)}
        for u in watch_users
        for k, m in enumerate(watch_movies)
    ]
    rate = [
        {"time": moment, "user_id": u, "movie_id": m, "rating": 4, "partition": 0, "offset": next(offsets)}
        for u in rate_users
        for m in rate_movies
    ]
    reco = [
        {
            "time": moment, "user_id": u, "server": "site-baseline:8082", "status": 200,
            "items": reco_movies, "error": None, "latency_ms": 40, "partition": 0, "offset": next(offsets),
        }
        for u in reco_users
    ]  # fmt: skip
    reco.append(  # a failed request: no items, its user still counts
        {
            "time": moment, "user_id": reco_users[0], "server": "movierec:8082", "status": 0, "items": [],
            "error": "java.net.ConnectException: Connection refused", "latency_ms": 800, "partition": 0,
            "offset": next(offsets),
        }
    )  # fmt: skip
    for name, rows, schema in (("watch", watch, WATCH), ("rate", rate, RATE), ("reco", reco, RECO)):
        path = lake.partition_dir(settings, name, moment) / lake.batch_file_name(batch)
        lake.write_parquet_atomically(pa.Table.from_pylist(rows, schema=schema), path)


def stored_users(settings: Settings) -> list[int]:
    return sorted(lake.read_table(settings, "users")["user_id"].to_pylist())


def stored_movies(settings: Settings) -> list[str]:
    return sorted(lake.read_table(settings, "movies")["id"].to_pylist())


# --- the runs ---------------------------------------------------------------------------


def test_fetches_exactly_the_missing_ids_stores_them_and_then_nothing(api: Api, tmp_path: Path) -> None:
    settings = sync_settings(tmp_path, api.url)
    users = list(range(1, 13))
    movies = [str(m) for m in api.world.movie_ids[:8]]
    write_events(settings, "b1", users, movies)
    # already stored by an earlier run: users 1 and 2, the first movie
    before = datetime(2026, 11, 27, tzinfo=UTC)
    known_users = [api.world.user_record(u) | {"fetched_at": before} for u in (1, 2)]
    lake.write_parquet_atomically(
        pa.Table.from_pylist(known_users, schema=schemas.USERS),
        lake.table_dir(settings, "users") / "part-earlier.parquet",
    )
    first_movie = catalog_sync.movie_row(movies[0], api.world.movies.to_pylist()[0], before)
    lake.write_parquet_atomically(
        pa.Table.from_pylist([first_movie], schema=schemas.MOVIES),
        lake.table_dir(settings, "movies") / "part-earlier.parquet",
    )

    report = catalog_sync.sync_catalog(settings, client_id=client())

    assert report["status"] == "complete"
    assert (report["users"]["seen"], report["movies"]["seen"]) == (12, 8)
    assert (report["users"]["fetched"], report["movies"]["fetched"]) == (10, 7)
    # the site's records pass their expectations (checked by GX, kept in the run's report)
    assert report["quality"] == {k: {"success": True, "failed_expectations": []} for k in ("user", "movie")}
    assert report["requests"] == 17  # one request per missing id, none for stored ones
    assert report["throttled"] == 0  # our own limit (10/s) stays under the API's (20/s, burst 10)
    assert report["remaining"] == 0
    assert stored_users(settings) == users
    assert stored_movies(settings) == sorted(movies)
    assert len(json.dumps(report)) > 0  # the report is an XCom: JSON

    # what is stored is what the API said
    table = lake.read_table(settings, "users")
    for row in table.to_pylist():
        assert {k: row[k] for k in ("user_id", "age", "occupation", "gender")} == api.world.user_record(
            row["user_id"]
        )
    records = {r["id"]: r for r in api.world.movies.to_pylist()}
    for row in lake.read_table(settings, "movies").to_pylist():
        record = records[row["id"]]
        assert row["title"] == record["title"]
        assert row["genres"] == [g["name"] for g in record["genres"]]
        assert row["release_date"] == date.fromisoformat(record["release_date"])
        assert row["runtime"] == record["runtime"]
        assert row["vote_count"] == record["vote_count"]
        assert json.loads(row["production_companies"]) == record["production_companies"]
        collection = row["belongs_to_collection"]  # null stays null, an object is JSON text
        assert (collection and json.loads(collection)) == record["belongs_to_collection"]
    run_file = lake.table_dir(settings, "users") / lake.batch_file_name(report["run"])
    assert str(run_file.relative_to(lake.lake_dir(settings))) in report["files"]

    again = catalog_sync.sync_catalog(settings, client_id=client())
    assert again["status"] == "complete"
    assert (again["fetched"], again["requests"], again["files"]) == (0, 0, [])
    assert stored_users(settings) == users  # no duplicates
    assert stored_movies(settings) == sorted(movies)


def test_a_429_pauses_for_retry_after_and_everything_is_still_fetched(api: Api, tmp_path: Path) -> None:
    # our limit far above the API's: the burst is spent at once and the API answers 429
    settings = sync_settings(tmp_path, api.url, MOVIEREC_CATALOG_RATE="1000")
    users = list(range(20, 40))
    movies = [str(m) for m in api.world.movie_ids[10:16]]
    write_events(settings, "b1", users, movies)

    report = catalog_sync.sync_catalog(settings, client_id=client(), policy=FAST)

    assert report["throttled"] > 0
    assert report["status"] == "complete"
    assert report["fetched"] == len(users) + len(movies)
    assert report["requests"] == report["fetched"] + report["throttled"]
    assert stored_users(settings) == users


def test_unknown_ids_are_remembered_and_not_asked_again(api: Api, tmp_path: Path) -> None:
    settings = sync_settings(tmp_path, api.url)
    users = [3, 4, 5, USERS + 7]
    movies = [str(api.world.movie_ids[0]), str(api.world.movie_ids[1]), "no+such+movie+1999", "a+b+c+2001"]
    write_events(settings, "b1", users, movies)

    report = catalog_sync.sync_catalog(settings, client_id=client())
    assert report["status"] == "complete"
    assert (report["users"]["fetched"], report["users"]["unknown_new"]) == (3, 1)
    assert (report["movies"]["fetched"], report["movies"]["unknown_new"]) == (2, 2)
    unknown = lake.read_table(settings, "catalog_unknown").to_pylist()
    assert {(u["kind"], u["id"], u["status"]) for u in unknown} == {
        ("user", str(USERS + 7), 404),
        ("movie", "no+such+movie+1999", 404),
        ("movie", "a+b+c+2001", 404),
    }
    assert all(u["message"].startswith("unknown") for u in unknown)

    again = catalog_sync.sync_catalog(settings, client_id=client())
    assert again["requests"] == 0
    assert (again["users"]["unknown_known"], again["movies"]["unknown_known"]) == (1, 2)
    assert again["unknown_new"] == 0
    assert len(lake.read_table(settings, "catalog_unknown")) == 3


def test_bursts_of_5xx_are_retried(faults: Api, tmp_path: Path) -> None:
    settings = sync_settings(tmp_path, faults.url, MOVIEREC_CATALOG_RATE="20")
    users = list(range(100, 130))
    movies = [str(m) for m in faults.world.movie_ids[20:30]]
    write_events(settings, "b1", users, movies)
    faults.faults(error_probability=0.15, error_burst_seconds=0.05, error_status=502)

    report = catalog_sync.sync_catalog(settings, client_id=client(), policy=FAST)

    assert report["retries"] > 0
    assert report["status"] == "complete"
    assert report["fetched"] == len(users) + len(movies)
    assert stored_users(settings) == users
    assert stored_movies(settings) == sorted(movies)


def test_an_outage_delays_the_run_keeps_what_it_got_and_the_next_run_finishes(
    faults: Api, tmp_path: Path
) -> None:
    settings = sync_settings(tmp_path, faults.url)  # 10 requests/s
    users = list(range(200, 224))
    movies = [str(m) for m in faults.world.movie_ids[40:46]]
    write_events(settings, "b1", users, movies)
    faults.faults(outage_after_requests=8)  # starts while the run is going (not on a clock), no end
    give_up_fast = RetryPolicy(attempts=3, base_delay=0.05)

    with pytest.raises(CatalogDelayed) as raised:
        catalog_sync.sync_catalog(settings, client_id=client(), policy=give_up_fast)

    report = raised.value.report
    assert report["status"] == "delayed"
    assert "503" in report["error"]
    total = len(users) + len(movies)
    assert 0 < report["fetched"] < total
    assert report["remaining"] == total - report["fetched"]
    # what it got is stored, nothing else
    assert len(stored_users(settings)) + len(stored_movies(settings)) == report["fetched"]

    faults.clear()
    finish = catalog_sync.sync_catalog(settings, client_id=client())
    assert finish["status"] == "complete"
    assert finish["fetched"] == total - report["fetched"]  # only what was still missing
    assert stored_users(settings) == users
    assert stored_movies(settings) == sorted(movies)


def test_an_unreachable_api_is_a_delay_not_a_crash(tmp_path: Path) -> None:
    settings = sync_settings(tmp_path, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    write_events(settings, "b1", [1, 2, 3], ["a+1999", "b+2000", "c+2001", "d+2002"])

    with pytest.raises(CatalogDelayed) as raised:
        catalog_sync.sync_catalog(settings, policy=RetryPolicy(attempts=2, base_delay=0.01))

    report = raised.value.report
    assert report["status"] == "delayed"
    assert "ConnectError" in report["error"]
    assert (report["fetched"], report["files"]) == (0, [])
    assert not lake.table_dir(settings, "users").exists()


def test_a_run_fetches_at_most_the_cap_movies_and_users_in_turns(api: Api, tmp_path: Path) -> None:
    settings = sync_settings(tmp_path, api.url, MOVIEREC_CATALOG_MAX_FETCHES="5")
    users = list(range(300, 306))
    movies = [str(m) for m in api.world.movie_ids[50:54]]
    write_events(settings, "b1", users, movies)

    first = catalog_sync.sync_catalog(settings, client_id=client())
    assert first["status"] == "capped"
    assert first["requests"] == 5
    assert len(stored_movies(settings)) == 3  # movie, user, movie, user, movie
    assert len(stored_users(settings)) == 2
    assert first["remaining"] == 5

    second = catalog_sync.sync_catalog(settings, client_id=client())
    assert (second["status"], second["fetched"], second["remaining"]) == ("complete", 5, 0)
    assert stored_users(settings) == users
    assert stored_movies(settings) == sorted(movies)


def test_a_run_stores_as_it_goes_and_asks_for_the_newest_events_users_first(api: Api, tmp_path: Path) -> None:
    settings = sync_settings(tmp_path, api.url, MOVIEREC_CATALOG_MAX_FETCHES="7")
    # the older hour's users have the smaller ids: an ascending order would ask for them first
    old_users, new_users = [400, 401, 402], [410, 411, 412]
    movies = [str(m) for m in api.world.movie_ids[70:74]]
    write_events(settings, "b1", old_users, movies)
    write_events(settings, "b2", new_users, movies, moment=MOMENT + timedelta(hours=2))

    first = catalog_sync.sync_catalog(settings, client_id=client(), commit_every=3)
    assert (first["status"], first["requests"], first["fetched"]) == ("capped", 7, 7)
    assert stored_users(settings) == new_users  # 4 movies and 3 users in turns, the newest first
    assert stored_movies(settings) == sorted(movies)
    # stored every 3 records: [movie, user, movie] [user, movie, user] [movie]
    by_table: dict[str, list[str]] = {}
    for file in first["files"]:
        by_table.setdefault(file.split("/")[0], []).append(file)
    assert {table: len(files) for table, files in by_table.items()} == {"users": 2, "movies": 3}
    root = lake.lake_dir(settings)
    assert sorted(lake.read_files(settings, "users", by_table["users"])["user_id"].to_pylist()) == new_users
    assert all((root / file).exists() for file in first["files"])

    second = catalog_sync.sync_catalog(settings, client_id=client(), commit_every=3)
    assert (second["status"], second["users"]["fetched"], second["remaining"]) == ("complete", 3, 0)
    assert stored_users(settings) == old_users + new_users


def test_spare_fetches_sweep_unseen_users_up_to_the_largest_id_seen(api: Api, tmp_path: Path) -> None:
    settings = sync_settings(
        tmp_path, api.url, MOVIEREC_CATALOG_MAX_FETCHES="8", MOVIEREC_CATALOG_SWEEP_USERS="true"
    )
    movies = [str(m) for m in api.world.movie_ids[60:63]]
    write_events(settings, "b1", [3, 6, 9], movies)  # ids 1-2, 4-5 and 7-8 never showed up

    first = catalog_sync.sync_catalog(settings, client_id=client())
    # the seen ones first (3 movies, users 3, 6, 9), then the lowest unseen ids with the 2 left: 1, 2
    assert (first["status"], first["requests"], first["remaining"]) == ("complete", 8, 0)
    assert first["users"]["fetched"] == 3 and first["users"]["swept_fetched"] == 2
    assert stored_users(settings) == [1, 2, 3, 6, 9]

    second = catalog_sync.sync_catalog(settings, client_id=client())
    assert (second["requests"], second["users"]["swept_fetched"]) == (4, 4)  # 4, 5, 7, 8
    third = catalog_sync.sync_catalog(settings, client_id=client())
    assert (third["requests"], third["users"]["swept"]) == (0, 0)  # nothing above 9 is asked for
    assert stored_users(settings) == list(range(1, 10))
    for row in lake.read_table(settings, "users").to_pylist():  # what the API holds for each
        assert {k: row[k] for k in ("user_id", "age", "occupation", "gender")} == api.world.user_record(
            row["user_id"]
        )


# --- the token bucket, on a clock we control ---------------------------------------------------


class FakeClock:
    """Time that only moves when the bucket sleeps: exact pacing without waiting."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_token_bucket_allows_a_burst_then_paces_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(13):
        bucket.acquire()
        stamps.append(clock.now)
    assert stamps[:3] == [100.0] * 3  # the burst
    assert stamps[-1] == pytest.approx(101.0)  # then 10 more at 10/s
    gaps = [b - a for a, b in itertools.pairwise(stamps[3:])]
    assert all(gap == pytest.approx(0.1) for gap in gaps)


def test_the_token_bucket_holds_everyone_for_a_retry_after() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.hold(2.0)
    bucket.acquire()
    # nobody before the pause ends, then at the rate (tokens do not pile up during the pause)
    assert clock.now == pytest.approx(102.1)
