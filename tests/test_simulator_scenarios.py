"""Scenarios: every injected line is rejected for its intended reason, and each scenario does what it says.

Backfill runs use a small world and a list sink (no Kafka); live runs use a
stand-in recommendation service and, for the catalog outage, the real catalog
API in a subprocess. The Kafka test drives the command end to end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from confluent_kafka import Consumer

from movierec import cli
from movierec.movielog import Malformed, RateEvent, Reason, RecoEvent, WatchEvent, parse_line
from movierec.ops.broker import broker
from movierec.settings import Settings
from simulator import commands
from simulator.backfill import history_lines
from simulator.catalog import GENRE_INDEX, load_world
from simulator.damage import DAMAGES, drift, fits, line_kind
from simulator.director import Director, catalog_faults
from simulator.history import History, Line
from simulator.injection_log import default_path, is_line, open_log, read_log
from simulator.live import SCRAPER_USER_AGENT, run_live
from simulator.scenarios import KINDS, Scenario, ScenarioError, Scenarios, make, parse_spec
from simulator.truth import load_truth
from simulator.viewers import Behaviour
from tests.catalog_api import running_catalog_api
from tests.conftest import free_port
from tests.test_simulator_catalog import USERS, small_settings

START = datetime(2026, 11, 20, 0, 0, 0)
MID = START + timedelta(hours=6)  # where the scenarios of the behaviour tests start
DAYS, SESSIONS_PER_DAY = 0.5, 6_000

ALL_SCENARIOS = [
    "malformed:strength=0.03",
    "format_drift:start=+2h,end=+4h,strength=0.01,form=space_time",
    "format_drift:start=+3h,strength=0.01,form=extra_field",
    "catalog_outage:start=+1h,end=+2h",
    "taste_drift:start=+6h,genre=Comedy",
    "new_releases:start=+6h,strength=0.05",
    "rating_spam:start=+2h,accounts=10",
    "scraper:start=+1h,end=+5h,strength=50",
    "follow:start=+4h,strength=0.9",
]


@dataclass
class Run:
    lines: list[Line]
    records: list[dict[str, Any]]
    director: Director | None

    def events(self) -> list[Any]:
        return [parse_line(line) for _, _, line in self.lines]

    def run_record(self) -> dict[str, Any]:
        return next(r for r in self.records if r["event"] == "run")


def backfill(
    history: History, specs: list[str], *, seed: int = 1, follow: float = 0.5, record: Any = None
) -> Run:
    records: list[dict[str, Any]] = []
    director = None
    if specs:
        director = Director.for_run(
            Scenarios.of_specs(specs, START),
            history,
            seed=seed,
            record=record or records.append,
            follow=follow,
            origin=START,
            mode="backfill",
        )
    rng = np.random.default_rng(seed)
    lines = list(history_lines(rng, history, START, DAYS, SESSIONS_PER_DAY, follow, director))
    return Run(lines, records, director)


def check_injections(lines: Iterable[str | bytes], records: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    """Every rejected line is the next injected one, rejected for its intended reason; all were written."""
    injected = iter([r for r in records if r["event"] == "inject"])
    seen: Counter[tuple[str, str]] = Counter()
    for line in lines:
        parsed = parse_line(line)
        if isinstance(parsed, Malformed):
            record = next(injected, None)
            assert record is not None, f"a malformed line no scenario injected: {line!r:.200}"
            assert is_line(record, line), (record, line)
            assert parsed.reason.value == record["reason"], (record, parsed)
            seen[record["scenario"], record["reason"]] += 1
    assert next(injected, None) is None, "an injected line was never written"
    return seen


def session_starts(events: list[Any], after: bool) -> list[WatchEvent]:
    return [e for e in events if isinstance(e, WatchEvent) and e.minute == 0 and (e.time >= MID) == after]


# --- the model -------------------------------------------------------------------------


def test_a_spec_sets_times_strength_and_options_over_the_kinds_defaults() -> None:
    s = parse_spec("malformed:start=2026-11-20T06:00,strength=0.01", START)
    assert s == Scenario("malformed", datetime(2026, 11, 20, 6), None, 0.01, {})
    s = parse_spec("taste_drift:genre=science_fiction,start=+1d6h,end=+2d", START)
    assert (s.start, s.end) == (START + timedelta(hours=30), START + timedelta(days=2))
    assert s.options == {"genre": "Science Fiction", "ramp_hours": 0.0}
    assert s.strength == KINDS["taste_drift"].strength
    spam = parse_spec("rating_spam:accounts=7", START)
    assert spam.start == START and spam.options["accounts"] == 7 and spam.options["minutes"] == 3
    assert spam.active(START) and not parse_spec("follow:end=+1h", START).active(START + timedelta(hours=1))


@pytest.mark.parametrize(
    "spec",
    [
        "meteor_strike",
        "malformed:strength=1.5",
        "follow:strength=-0.1",
        "taste_drift:genre=Telenovela",
        "format_drift:form=xml",
        "malformed:colour=red",
        "malformed:start=yesterday",
        "malformed:start=+2h,end=+1h",
        "rating_spam:accounts=many",
        "malformed:strength",
        "malformed:start=2026-11-20T06:00+01:00",
    ],
)
def test_a_bad_spec_is_a_clear_error(spec: str) -> None:
    with pytest.raises(ScenarioError):
        parse_spec(spec, START)


def test_scenarios_load_from_toml_and_json_files(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[[scenario]]\nkind = "malformed"\nstart = 2026-11-20T06:00:00\nstrength = 0.02\n\n'
        '[[scenario]]\nkind = "format_drift"\nstart = "+1h"\nform = "extra_field"\n\n'
        '[[scenario]]\nkind = "scraper"\n[scenario.options]\nfirst = 5000\n'
    )
    json_file = tmp_path / "s.json"
    json_file.write_text('[{"kind": "follow", "strength": 1, "end": "+1d"}]')
    from_toml = Scenarios.load(toml, START)
    assert [s.kind for s in from_toml] == ["malformed", "format_drift", "scraper"]
    assert from_toml.items[0].start == datetime(2026, 11, 20, 6) and from_toml.items[0].strength == 0.02
    assert from_toml.items[1].options["form"] == "extra_field"
    assert from_toml.items[2].options["first"] == 5000
    both = Scenarios.gather(["malformed"], json_file, START)
    assert [s.kind for s in both] == ["follow", "malformed"]
    assert both.items[0].end == START + timedelta(days=1)
    (tmp_path / "bad.json").write_text('{"scenario": [{"strength": 1}]}')
    with pytest.raises(ScenarioError):
        Scenarios.load(tmp_path / "bad.json", START)


def test_world_scenario_list_prints_every_kind_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli.build_parser().parse_args(["world", "scenario", "list"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    for kind in KINDS.values():
        assert kind.name in out
        for option in kind.options:
            assert f"{option} = " in out
    backfill_args = cli.build_parser().parse_args(
        ["world", "backfill", "--days", "1", "--scenario", "malformed", "--scenario", "follow:strength=1"]
    )
    assert backfill_args.scenario == ["malformed", "follow:strength=1"] and backfill_args.days == 1


def test_catalog_outage_faults_switch_on_and_off() -> None:
    full = make("catalog_outage", START, START + timedelta(hours=1))
    assert catalog_faults(full, True) == {
        "outage_start": START.timestamp(),
        "outage_end": (START + timedelta(hours=1)).timestamp(),
    }
    assert catalog_faults(full, False) == {"outage_start": None, "outage_end": None}
    partial = make("catalog_outage", START, strength=0.3)
    assert catalog_faults(partial, True)["error_probability"] == 0.3
    assert catalog_faults(partial, False) == {"error_probability": 0.0}


# --- broken lines ------------------------------------------------------------------------


def sample_lines(history: History) -> list[str]:
    """Real lines of every kind, plus the forms live mode writes (failures, fractions, minutes)."""
    lines = [line for _, _, line in backfill(history, []).lines[:20_000] if isinstance(line, str)]
    server = "recommendation request 127.0.0.1:8082"
    lines += [
        f"2026-11-20T10:15:02.123456,17,{server}, status 0, result: java.util.concurrent.TimeoutException: "
        "Request timeout to 127.0.0.1:8082 after 800 ms, 800 ms",
        f"2026-11-20T10:15,18,{server}, status 404, result: no such user, 3 ms",
        f"2026-11-20T10:15:03,19,{server}, status 200, result: , 2 ms",
        f"2026-11-20T10:15:03.5,20,{server}, status 200, result: a+b+2001, 12 ms",
        "2026-11-20T10:15,21,GET /data/m/a+b+2001/0.mpg",
        "2026-11-20T10:15:04.25,22,GET /rate/a+b+2001=1",
    ]
    return lines


def test_every_reason_of_the_grammar_has_a_damage_that_breaks_real_lines_for_it(history: History) -> None:
    assert {damage.reason for damage in DAMAGES} == set(Reason)
    lines = sample_lines(history)
    by_kind: dict[str, list[str]] = {}
    for line in lines:
        assert not isinstance(parse_line(line), Malformed)
        by_kind.setdefault(line_kind(line), []).append(line)
    assert set(by_kind) == {"watch", "rate", "reco", "reco200"}
    rng = np.random.default_rng(3)
    for damage in DAMAGES:
        for kind, candidates in by_kind.items():
            if not fits(damage.needs, kind):
                continue
            for line in [*candidates[:40], *candidates[-3:]]:
                for _ in range(6):  # several variants of each
                    broken = damage.build(rng, line)
                    parsed = parse_line(broken)
                    assert isinstance(parsed, Malformed) and parsed.reason == damage.reason, (
                        damage.reason,
                        line,
                        broken if len(broken) < 300 else len(broken),
                    )


def test_format_drift_lines_are_rejected_for_the_reason_it_states(history: History) -> None:
    rng = np.random.default_rng(4)
    for line in sample_lines(history):
        for form in ("space_time", "extra_field"):
            drifted, reason = drift(rng, line, form)
            parsed = parse_line(drifted)
            assert isinstance(parsed, Malformed) and parsed.reason == reason
    assert drift(rng, "2026-11-20T10:15:02,5,GET /rate/a+b+2001=4", "space_time")[0].startswith(
        "2026-11-20 10:15:02,5,"
    )


# --- backfill with every scenario on ----------------------------------------------------


def test_with_every_scenario_on_only_injected_lines_are_rejected_each_for_its_reason(
    history: History, tmp_path: Path
) -> None:
    log_path = tmp_path / "ground_truth.jsonl"
    with open_log(log_path) as record:
        run = backfill(history, ALL_SCENARIOS, record=record)
    records = read_log(log_path, run.director.run_id)
    assert records and records[0]["event"] == "run"
    assert [s["kind"] for s in records[0]["scenarios"]] == [spec.split(":")[0] for spec in ALL_SCENARIOS]

    seen = check_injections((line for _, _, line in run.lines), records)
    malformed = {reason for scenario, reason in seen if scenario == "malformed"}
    assert malformed == {reason.value for reason in Reason}  # every kind the grammar rejects
    drifted = {reason for scenario, reason in seen if scenario == "format_drift"}
    assert {"bad_time", "extra_fields"} <= drifted
    # bytes and very long lines went through the JSON log and still match exactly
    assert any("line_base64" in r for r in records) and any("sha256" in r for r in records)

    injected = [r for r in records if r["event"] == "inject"]
    assert all(datetime.fromisoformat(r["time"]) >= START for r in injected)
    space_time = [r for r in injected if r["scenario"] == "format_drift" and r["reason"] == "bad_time"]
    hours = {datetime.fromisoformat(r["time"]).hour for r in space_time}
    assert hours and hours <= {2, 3}  # only inside its window, [+2h, +4h)
    assert 0.02 < sum(seen.values()) / len(run.lines) < 0.06

    switched = {(r["kind"], r["event"]): r["time"] for r in records if r["event"] in ("start", "end")}
    assert switched["catalog_outage", "start"] == "2026-11-20T01:00:00"  # recorded only, in backfill
    assert switched["catalog_outage", "end"] == "2026-11-20T02:00:00"
    assert switched["scraper", "start"] == "2026-11-20T01:00:00"
    assert sorted(r["index"] for r in records if r["event"] == "start") == list(range(len(ALL_SCENARIOS)))
    summary = records[-1]
    assert summary["event"] == "summary" and summary["written"] == len(run.lines)
    assert sum(summary["injected"]["malformed"].values()) == sum(
        n for (scenario, _), n in seen.items() if scenario == "malformed"
    )
    assert summary["spam_sessions"] > 0


def test_same_seed_and_scenarios_give_the_same_lines_and_ground_truth(history: History) -> None:
    first = backfill(history, ALL_SCENARIOS, seed=5)
    again = backfill(history, ALL_SCENARIOS, seed=5)
    assert first.lines == again.lines
    assert first.records == again.records
    other = backfill(history, ALL_SCENARIOS, seed=6)
    assert other.lines != first.lines


def test_malformed_lines_are_added_and_the_real_lines_stay_as_they_were(history: History) -> None:
    plain = backfill(history, [])
    damaged = backfill(history, ["malformed:strength=0.05"])
    real = [item for item in damaged.lines if not isinstance(parse_line(item[2]), Malformed)]
    assert real == plain.lines
    assert len(damaged.lines) > 1.03 * len(plain.lines)


# --- each scenario's effect ---------------------------------------------------------------


def test_taste_drift_raises_the_genres_share_of_watches_after_its_start(history: History) -> None:
    comedy = history.genres[:, GENRE_INDEX["Comedy"]]
    index_of = {str(slug): i for i, slug in enumerate(history.slugs)}

    def share(events: list[Any], after: bool) -> float:
        starts = session_starts(events, after)
        assert len(starts) > 300
        return float(np.mean([comedy[index_of[e.movie_id]] for e in starts]))

    plain = backfill(history, []).events()
    drifted = backfill(history, ["taste_drift:start=+6h,genre=Comedy"]).events()
    assert share(drifted, after=False) == share(plain, after=False)  # the past is unchanged
    assert share(drifted, after=True) > 1.6 * share(drifted, after=False)
    assert share(drifted, after=True) > 1.6 * share(plain, after=True)


def test_a_ramping_taste_drift_grows_to_full_strength_and_stops_at_its_end(history: History) -> None:
    spec = "taste_drift:start=+6h,end=+20h,genre=Drama,strength=1.0,ramp_hours=4"
    director = Director.for_run(
        Scenarios.of_specs([spec], START),
        history,
        seed=1,
        record=[].append,
        follow=0.5,
        origin=START,
        mode="test",
    )
    drama = history.genres[:, GENRE_INDEX["Drama"]]

    def bonus(hours: float) -> np.ndarray:
        audience = director.stage(START + timedelta(hours=hours))[0].audience
        return np.zeros(len(drama)) if audience.bonus is None else audience.bonus

    assert not bonus(5.9).any() and not bonus(20).any()
    assert np.allclose(bonus(8), 0.5 * drama)
    assert np.allclose(bonus(10), drama) and np.allclose(bonus(19), drama)
    assert director.stage(START + timedelta(hours=5))[0] is history  # nothing changed before the start


def test_new_releases_are_nowhere_before_their_start_and_watched_after(history: History) -> None:
    run = backfill(history, ["new_releases:start=+6h,strength=0.05"])
    held = set(run.run_record()["scenarios"][0]["held"])
    assert len(held) == round(0.05 * len(history.slugs))
    assert held == {str(slug) for slug in history.slugs[run.director.held]}
    newest = np.sort(history.released)[-len(held) :]
    assert sorted(history.released[run.director.held]) == sorted(newest)

    def movies(event: Any) -> set[str]:
        return set(event.items) if isinstance(event, RecoEvent) else {event.movie_id}

    events = run.events()
    assert not [e for e in events if e.time < MID and movies(e) & held]
    watched_after = [e for e in events if isinstance(e, WatchEvent) and e.time >= MID and e.movie_id in held]
    assert len({e.user_id for e in watched_after}) > 20


def test_a_rating_spam_ring_of_new_accounts_rates_its_target_5_after_start(history: History) -> None:
    run = backfill(history, ["rating_spam:start=+6h,accounts=20,strength=2"])
    described = run.run_record()["scenarios"][0]
    first, last = described["accounts"]
    assert (first, last) == (USERS + 1, USERS + 20)
    least_popular = str(history.slugs[np.argmin(history.popularity)])
    assert described["target"] == least_popular

    events = run.events()
    ring = [e for e in events if e.user_id > USERS]
    assert ring and all(first <= e.user_id <= last and e.time >= MID for e in ring)
    ratings = [e for e in ring if isinstance(e, RateEvent)]
    assert len(ratings) > 50 and {(e.movie_id, e.rating) for e in ratings} == {(least_popular, 5)}
    assert {e.movie_id for e in ring if isinstance(e, WatchEvent)} == {least_popular}
    assert len({e.user_id for e in ratings}) > 10
    real = [e for e in events if e.user_id <= USERS and isinstance(e, RateEvent)]
    assert not real or sum(e.movie_id == least_popular for e in real) < 5


def test_the_follow_knob_scenario_shifts_watches_to_the_shown_list(home: Path) -> None:
    # Viewers who look at any list (list-fit power 0: the fit does not matter), so the knob's
    # effect on the site's popularity list shows in a small world; the calibrated strength of
    # list-following is tested in test_simulator_viewers.
    settings = small_settings(home)
    world = load_world(settings)
    history = History.build(world, load_truth(settings, world), Behaviour(list_fit_power=0.0))
    shown = {str(slug) for slug in history.slugs[history.baseline]}

    def from_list(events: list[Any], after: bool) -> float:
        return float(np.mean([e.movie_id in shown for e in session_starts(events, after)]))

    plain = backfill(history, [], follow=0.1).events()
    knob = backfill(history, ["follow:start=+6h,strength=1.0"], follow=0.1).events()
    assert from_list(knob, after=False) == from_list(plain, after=False)
    assert from_list(knob, after=True) > from_list(knob, after=False) + 0.07
    assert from_list(knob, after=True) > from_list(plain, after=True) + 0.07


# --- live mode ------------------------------------------------------------------------------


@dataclass
class Service:
    url: str
    scraped: list[int]  # user ids asked for with the scraper's user agent


@pytest.fixture(scope="module")
def service(history: History) -> Iterator[Service]:
    """A stand-in recommendation service that notes which user ids the scraper asked for."""
    body = ",".join(str(slug) for slug in history.slugs[:20]).encode()
    scraped: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.headers.get("User-Agent") == SCRAPER_USER_AGENT:
                scraped.append(int(self.path.rsplit("/", 1)[-1]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # the scraper opens many connections at once
        daemon_threads = True

    server = Server(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Service(f"http://127.0.0.1:{server.server_address[1]}", scraped)
    server.shutdown()
    server.server_close()


def live(
    history: History,
    url: str,
    specs: list[str],
    seconds: float,
    catalog_url: str | None = None,
    during: Callable[[], Awaitable[None]] | None = None,
    origin: datetime | None = None,
) -> tuple[list[str | bytes], dict[str, int], list[dict[str, Any]]]:
    """Live viewers for ``seconds`` (then ``during``, if given) with ``specs`` from ``origin`` (now)."""
    lines: list[str | bytes] = []
    records: list[dict[str, Any]] = []

    async def main() -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if during is None:
            loop.call_later(seconds, stop.set)
        else:

            async def probe_then_stop() -> None:
                await asyncio.sleep(seconds)
                await during()
                stop.set()

            probe = asyncio.create_task(probe_then_stop())
        counts = await run_live(
            history,
            lambda line, _user: lines.append(line),
            url,
            seed=1,
            lines_per_second=2_000,
            follow=1.0,
            minute_seconds=0.01,
            stop=stop,
            scenarios=Scenarios.of_specs(specs, origin or datetime.now()),
            record=records.append,
            catalog_url=catalog_url,
        )
        if during is not None:
            await probe
        return counts

    return lines, asyncio.run(main()), records


def test_live_scraper_enumerates_consecutive_ids_and_writes_no_movielog_lines(
    history: History, service: Service
) -> None:
    first = 100_000

    async def until_the_site_saw_250() -> None:
        # a run of fixed wall time scraped 119 ids on a loaded CI box: run until enough arrived instead
        deadline = time.monotonic() + 60
        while len(service.scraped) < 250 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    lines, counts, records = live(
        history,
        service.url,
        [f"scraper:strength=200,first={first}", "malformed:strength=0.05"],
        0.5,
        during=until_the_site_saw_250,
    )
    scraped = sorted(service.scraped)
    sent = counts["scraper_requests"]
    # every answered request reached the site (requests in flight at the stop are cut off: how many
    # depends on the machine's load, so the bound is the answers, not the requests sent)
    assert counts["scraper_answered"] > 150 and len(scraped) >= counts["scraper_answered"]
    # consecutive ids from the first, each once (a request cut off by the stop may be missing)
    assert scraped[0] == first and len(set(scraped)) == len(scraped)
    assert set(scraped) <= set(range(first, first + sent))
    events = [p for p in map(parse_line, lines) if not isinstance(p, Malformed)]
    assert len([e for e in events if isinstance(e, RecoEvent)]) == counts["reco_ok"] + counts["reco_failed"]
    assert events and max(e.user_id for e in events) <= USERS  # no line for a scraped id
    assert sum(check_injections(lines, records).values()) > 10  # live lines are damaged the same way
    summary = records[-1]
    assert (
        summary["event"] == "summary" and summary["counts"]["scraper_requests"] == counts["scraper_requests"]
    )


@pytest.fixture(scope="module")
def catalog_api(home: Path, history: History) -> Iterator[str]:
    """The real catalog API (``movierec world api``) on a free port, over the cached small world."""
    with running_catalog_api(small_settings(home)) as url:
        yield url


def test_live_catalog_outage_is_switched_on_the_real_api_and_off_when_the_run_stops(
    history: History, service: Service, catalog_api: str
) -> None:
    seen: dict[str, Any] = {}

    async def probe() -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            seen["faults"] = (await http.get(f"{catalog_api}/_faults")).json()
            seen["user"] = (await http.get(f"{catalog_api}/user/1")).status_code

    origin = datetime.now()
    _, _, records = live(history, service.url, ["catalog_outage:end=+1h"], 1.0, catalog_api, probe, origin)
    assert seen["user"] == 503
    assert seen["faults"]["outage_start"] == origin.timestamp()
    assert seen["faults"]["outage_end"] == (origin + timedelta(hours=1)).timestamp()
    after = httpx.get(f"{catalog_api}/_faults", timeout=5).json()
    assert (after["outage_start"], after["outage_end"]) == (None, None)
    assert httpx.get(f"{catalog_api}/user/1", timeout=5).status_code == 200
    calls = [r for r in records if r["event"] == "catalog_faults"]
    assert [c["ok"] for c in calls] == [True, True]
    assert calls[0]["faults"]["outage_start"] is not None and calls[1]["faults"]["outage_start"] is None


# --- the command, through the real broker ------------------------------------------------


@pytest.mark.kafka
def test_backfill_command_writes_injected_lines_to_the_topic_and_their_truth_to_the_log(
    kafka: Settings, home: Path
) -> None:
    settings = replace(small_settings(home), kafka_bootstrap=kafka.kafka_bootstrap, topic="scenarios.test")
    broker.ensure_topic(settings, settings.topic, partitions=2)
    specs = ["malformed:strength=0.05", "format_drift:start=+1h,strength=0.02,form=extra_field"]
    written = commands.backfill(
        settings, 0.125, sessions_per_day=4_000, end=START + timedelta(hours=3), scenarios=specs
    )
    records = read_log(default_path(settings))
    assert records[-1]["event"] == "summary" and records[-1]["written"] == written
    injected = [r for r in records if r["event"] == "inject"]
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.kafka_bootstrap,
            "group.id": "scenarios-test",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < written and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                if message.error() is None:
                    got.append(message.value() or b"")
    finally:
        consumer.close()
    assert len(got) == written
    rejected = [line for line in got if isinstance(parse_line(line), Malformed)]
    assert len(rejected) == len(injected) > 20
    unmatched = list(injected)
    for line in rejected:  # partitions interleave lines, so match as a multiset
        match = next(
            r for r in unmatched if is_line(r, line) and parse_line(line).reason.value == r["reason"]
        )
        unmatched.remove(match)
    assert not unmatched
