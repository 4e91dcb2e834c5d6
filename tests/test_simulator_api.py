"""The simulated catalog API over real HTTP: answers, 404s, the rate limit and switchable faults.

The server is the real thing: ``simulator.api.serve`` in a subprocess on a free
port, exactly what ``movierec world api`` runs.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from movierec.ratelimit import TokenBuckets
from simulator.api import Faults, FaultState
from simulator.catalog import World, load_world
from tests.catalog_api import running_catalog_api
from tests.test_simulator_catalog import MOVIE_FIELDS, USERS, small_settings

RATE, BURST = 2, 5  # small, so exceeding it does not depend on how fast the test machine is
_clients = itertools.count()


@dataclass
class Api:
    url: str
    world: World
    http: httpx.Client

    def get(self, path: str, client: str | None = None, **kwargs: object) -> httpx.Response:
        """GET as ``client`` (default: a fresh client id, so the rate limit stays out of the way)."""
        client = client or f"test-{next(_clients)}"
        return self.http.get(f"{self.url}{path}", headers={"X-Client-Id": client}, **kwargs)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = small_settings(tmp_path_factory.mktemp("api"))
    world = load_world(settings)  # built here, loaded from the cache by the server
    with running_catalog_api(settings, RATE, BURST) as url, httpx.Client(timeout=10) as http:
        yield Api(url, world, http)


@pytest.fixture
def faults(api: Api) -> Iterator[httpx.Client]:
    """The admin route, with every fault switched off again after the test."""
    yield api.http
    assert api.http.delete(f"{api.url}/_faults").status_code == 200


# --- answers --------------------------------------------------------------------


def test_a_user_is_answered_with_the_design_fields(api: Api) -> None:
    for user_id in (1, 2, USERS):
        response = api.get(f"/user/{user_id}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert list(body) == ["user_id", "age", "occupation", "gender"]
        assert body == api.world.user_record(user_id)


def test_a_movie_is_answered_with_its_full_record(api: Api) -> None:
    records = api.world.movies.to_pylist()
    for record in (records[0], records[123], records[-1]):
        response = api.get(f"/movie/{record['id']}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert list(body) == list(MOVIE_FIELDS)
        assert body == record


def test_percent_encoded_ids_are_the_same_ids(api: Api) -> None:
    slug = str(api.world.movie_ids[5])
    assert api.get(f"/movie/{slug.replace('+', '%2B')}").json()["id"] == slug
    assert api.get("/user/%31%32").json()["user_id"] == 12


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (f"/user/{USERS + 1}", "unknown user"),
        ("/user/99999999999999999999999", "malformed user id"),
        ("/user/abc", "malformed user id"),
        ("/user/0", "malformed user id"),
        ("/user/-3", "malformed user id"),
        ("/user/007", "malformed user id"),
        ("/movie/no+such+movie+1999", "unknown movie"),
        ("/movie/the+matrix", "malformed movie id"),
        ("/movie/a,b+1999", "malformed movie id"),
    ],
)
def test_unknown_or_malformed_ids_are_404_with_a_json_message(api: Api, path: str, reason: str) -> None:
    response = api.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["message"].startswith(reason)


def test_other_paths_are_404_with_a_json_message_too(api: Api) -> None:
    for path in ("/users/1", "/movie/", "/"):
        response = api.get(path)
        assert response.status_code == 404
        assert isinstance(response.json()["message"], str)


# --- rate limit -----------------------------------------------------------------


def test_a_client_over_its_rate_gets_429_with_retry_after(api: Api) -> None:
    codes = [api.get("/user/1", client="greedy") for _ in range(BURST + 5)]
    refused = [r for r in codes if r.status_code == 429]
    assert refused, [r.status_code for r in codes]
    assert all(r.status_code == 200 for r in codes[:BURST])
    retry_after = int(refused[0].headers["Retry-After"])
    assert retry_after >= 1
    assert refused[0].json()["message"] == "rate limit exceeded"
    # other clients are not affected...
    assert api.get("/user/1", client="polite").status_code == 200
    # ...and the greedy one is served again once it waited as told
    time.sleep(retry_after)
    assert api.get("/user/1", client="greedy").status_code == 200


def test_token_buckets_refill_at_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes back every 1/rate s
    assert buckets.take("b") == 0.0  # per client
    now[0] = 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    now[0] = 100.0
    assert [buckets.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # never more than the burst
    assert buckets.take("a") > 0


# --- faults ---------------------------------------------------------------------


def test_an_outage_answers_503_until_switched_off(api: Api, faults: httpx.Client) -> None:
    now = time.time()
    response = faults.post(f"{api.url}/_faults", json={"outage_start": now - 1, "outage_end": now + 600})
    assert response.status_code == 200 and response.json()["outage_end"] == now + 600
    for path in ("/user/1", f"/movie/{api.world.movie_ids[0]}"):
        answer = api.get(path)
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) > 500
        assert "outage" in answer.json()["message"]
    assert faults.delete(f"{api.url}/_faults").status_code == 200
    assert api.get("/user/1").status_code == 200
    assert api.get(f"/movie/{api.world.movie_ids[0]}").status_code == 200


def test_an_outage_window_in_the_future_does_not_answer_503_yet(api: Api, faults: httpx.Client) -> None:
    now = time.time()
    faults.post(f"{api.url}/_faults", json={"outage_start": now + 600, "outage_end": now + 900})
    assert api.get("/user/1").status_code == 200


def test_a_5xx_burst_fails_requests_until_switched_off(api: Api, faults: httpx.Client) -> None:
    faults.post(f"{api.url}/_faults", json={"error_probability": 1.0, "error_status": 502})
    assert [api.get("/user/2").status_code for _ in range(3)] == [502, 502, 502]
    faults.post(f"{api.url}/_faults", json={"error_probability": 0.0})
    assert api.get("/user/2").status_code == 200


def test_slow_answers_are_delayed(api: Api, faults: httpx.Client) -> None:
    faults.post(f"{api.url}/_faults", json={"slow_probability": 1.0, "slow_seconds": 3.0})
    with pytest.raises(httpx.ReadTimeout):  # a client with a short timeout gives up
        api.get("/user/3", timeout=0.5)
    faults.post(f"{api.url}/_faults", json={"slow_probability": 0.0})
    assert api.get("/user/3", timeout=5).status_code == 200


def test_bad_fault_settings_are_refused_with_400(api: Api, faults: httpx.Client) -> None:
    bad = [{"bogus": 1}, {"error_probability": 2}, {"outage_start": 10, "outage_end": 5}, [1]]
    for body in [*bad, {"outage_after_requests": -1}, {"outage_after_requests": 1.5}]:
        response = faults.post(f"{api.url}/_faults", json=body)
        assert response.status_code == 400 and response.json()["message"]
    assert faults.get(f"{api.url}/_faults").json() == {
        "error_probability": 0.0,
        "error_burst_seconds": 0.0,
        "error_status": 500,
        "slow_probability": 0.0,
        "slow_seconds": 0.0,
        "outage_start": None,
        "outage_end": None,
        "outage_after_requests": None,
    }


def test_outage_windows() -> None:
    assert not Faults().in_outage(100)
    window = Faults(outage_start=10, outage_end=20)
    assert [window.in_outage(t) for t in (9.9, 10, 19.9, 20)] == [False, True, True, False]
    assert Faults(outage_start=10).in_outage(1e12)  # open-ended until switched off
    assert Faults(outage_end=20).in_outage(0)


def test_an_outage_after_n_requests_counts_from_when_it_was_set() -> None:
    state = FaultState(Faults(), seed=1)
    assert [state.in_outage(0) for _ in range(3)] == [False] * 3
    state.set(Faults().updated({"outage_after_requests": 2}))  # the count starts again here
    assert [state.in_outage(0) for _ in range(4)] == [False, False, True, True]
    state.set(Faults())
    assert not state.in_outage(0)


def test_a_burst_lasts_its_window_then_stops() -> None:
    state = FaultState(Faults(error_probability=1.0, error_burst_seconds=5.0), seed=1)
    assert state.error(100.0)
    state.set(state.faults.updated({"error_probability": 0.0, "error_burst_seconds": 5.0}))
    assert not state.error(101.0)  # changing the faults ends a running burst
    state = FaultState(Faults(error_probability=1.0, error_burst_seconds=5.0), seed=1)
    assert state.error(100.0)
    state.faults = Faults()  # the probability drops, the burst already started runs on
    assert state.error(104.9) and not state.error(105.0)
