"""Catalog sync: the users and movies seen in the lake's events but not yet stored, from the catalog API.

Writes the lake tables ``users``, ``movies`` and ``catalog_unknown`` (ids the API answered
404), one file per table and commit of a run (``movierec.lake``, schemas in ``movierec.schemas``).

A run reads the user and movie ids of ``watch``, ``rate`` and ``reco`` (whose
``items`` are movie ids), subtracts what is stored and what is known to be
unknown (404 within ``UNKNOWN_RECHECK``), fetches at most
``MOVIEREC_CATALOG_MAX_FETCHES`` of the rest (movies and users in turns, users of the
newest events first) and writes one file per table about every minute of the run, so a
retrain can use a long run's first records while it goes on.

Being a good client of a rate-limited API: a token bucket keeps us at
``MOVIEREC_CATALOG_RATE`` requests/s (below the API's 50), a 429 pauses every
worker for its ``Retry-After``, and 5xx answers and connection errors are
retried with exponential backoff and jitter. A request that still fails after
its retries means the API is down: the run stops early, stores what it got and
raises ``CatalogDelayed`` (its report says ``"status": "delayed"``), so the
Airflow task is retried later; no other DAG depends on it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from movierec import lake
from movierec.schemas import FETCHED_AT, MOVIES, TABLES
from movierec.settings import Settings

log = logging.getLogger(__name__)

# Nested values of a movie record stored as JSON text (movierec.schemas.MOVIES).
_JSON_FIELDS = ("belongs_to_collection", "production_companies", "production_countries", "spoken_languages")

# A catalog may add a movie later (a new release): an unknown id is asked again after a week.
UNKNOWN_RECHECK = timedelta(days=7)
CLIENT_ID = "movierec-catalog"  # the API keeps one rate-limit bucket per X-Client-Id
CONCURRENCY = 4  # requests in flight; the token bucket sets the pace
COMMIT_SECONDS = 60  # a run stores what it fetched about once a minute (at the configured rate)


class CatalogDelayed(RuntimeError):
    """The catalog API is down: what could be fetched is stored, the rest waits for a retry."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__(
            f"catalog API unavailable ({report['error']}); stored {report['fetched']} records, "
            f"{report['remaining']} still missing"
        )
        self.report = report


# --- what is missing -------------------------------------------------------------


def seen_ids(settings: Settings) -> tuple[list[int], set[str]]:
    """User ids of every watch, rate and reco event in the lake, those of the newest events first,
    and their movie ids.

    Streams the files one by one and keeps only distinct ids: the watch table holds tens of
    millions of rows, its distinct ids fit in a few MB. Users of the newest hours come first
    because they are the ones asking for lists now: a run that cannot fetch everyone (the API's
    pace) fetches them first.
    """
    users: list[tuple[str, pa.Array]] = []  # (the file's partition path, its distinct users)
    movies: list[pa.Array] = []
    for table, movie_column in (("watch", "movie_id"), ("rate", "movie_id"), ("reco", "items")):
        root = lake.table_dir(settings, table)
        for path in lake.table_files(settings, table):
            data = lake.dataset(settings, table, [path]).to_table(columns=["user_id", movie_column])
            users.append((str(path.relative_to(root)), pc.unique(data.column("user_id"))))
            column = data.column(movie_column)
            movies.append(pc.unique(pc.list_flatten(column) if movie_column == "items" else column))
    # date=/hour= partition paths sort by time: the newest files' users first, each user once
    newest_first = [ids for _, ids in sorted(users, key=lambda item: item[0], reverse=True)]
    user_ids = pd.unique(pa.chunked_array(newest_first, pa.int64()).to_numpy()).tolist() if users else []
    movie_ids = pc.unique(pa.chunked_array(movies, pa.string())).to_pylist() if movies else []
    return user_ids, set(movie_ids)


def unseen_users(known: set[int], skip: set[int], limit: int) -> list[int]:
    """The first ``limit`` user ids in 1..max(``known``) not in ``skip``, ascending.

    The site hands out user ids in sequence, so every id up to the largest one seen is a
    user the catalog can answer for (or 404s once, remembered in ``catalog_unknown``): a
    list for every user the site knows needs them, not only those who have shown up yet.
    """
    if limit <= 0 or not known:
        return []
    ids = np.arange(1, max(known) + 1, dtype=np.int64)
    return ids[~np.isin(ids, np.fromiter(skip, np.int64, len(skip)))][:limit].tolist()


def _stored(settings: Settings, table: str, column: str) -> set[Any]:
    return set(lake.read_table(settings, table, columns=[column]).column(0).to_pylist())


def recently_unknown(settings: Settings, now: datetime) -> dict[str, set[str]]:
    """kind -> ids the API called unknown within UNKNOWN_RECHECK."""
    table = lake.read_table(settings, "catalog_unknown")
    recent = table.filter(pc.greater(table["checked_at"], pa.scalar(now - UNKNOWN_RECHECK, FETCHED_AT)))
    found: dict[str, set[str]] = {"user": set(), "movie": set()}
    for kind, ident in zip(recent["kind"].to_pylist(), recent["id"].to_pylist(), strict=True):
        found.setdefault(kind, set()).add(ident)
    return found


# --- a polite HTTP client ----------------------------------------------------------


class TokenBucket:
    """Client-side rate limit shared by the worker threads: ``rate`` requests/s, bursts of ``burst``;
    ``hold`` stops everyone until a time the server named (Retry-After)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = rate, float(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens, self._when, self._hold_until = float(burst), clock(), 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                if now > self._when:
                    self._tokens = min(self.burst, self._tokens + (now - self._when) * self.rate)
                    self._when = now
                if now < self._hold_until:
                    wait = self._hold_until - now
                elif self._tokens >= 1 - 1e-9:  # tolerate float rounding of the refill
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                else:
                    wait = (1 - self._tokens) / self.rate
            self._sleep(max(wait, 1e-6))

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)
            # no tokens pile up during the pause: afterwards we start at the rate, not in a burst
            self._tokens, self._when = 0.0, self._hold_until


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries per request on 5xx / connection errors before the API counts as down
    throttled_attempts: int = 20  # 429s tolerated for one request before the API counts as down
    base_delay: float = 1.0  # first backoff, doubled on each retry (with jitter)
    max_delay: float = 30.0
    max_retry_after: float = 120.0  # a server asking for a longer pause is down, not busy
    timeout: float = 10.0  # seconds per request

    def backoff(self, attempt: int) -> float:
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)  # jitter: workers do not retry in lockstep


@dataclass
class _Counters:
    requests: int = 0
    throttled: int = 0  # 429 answers
    retries: int = 0  # retries after 5xx or connection errors
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


@dataclass(frozen=True)
class Outcome:
    kind: str  # "ok", "unknown" (404), "invalid" (unusable answer), "down" (gave up), "skipped"
    body: Any = None
    status: int = 0
    message: str = ""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the HTTP-date form
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


class _Fetcher:
    def __init__(
        self, client: httpx.Client, bucket: TokenBucket, policy: RetryPolicy, stop: threading.Event
    ) -> None:
        self.client, self.bucket, self.policy, self.stop = client, bucket, policy, stop
        self.counters = _Counters()

    def get(self, path: str) -> Outcome:
        failures = throttles = 0
        while not self.stop.is_set():
            self.bucket.acquire()
            if self.stop.is_set():
                break
            self.counters.add("requests")
            wait: float | None = None
            try:
                response = self.client.get(path)
            except httpx.TransportError as exc:  # refused, reset, timed out
                problem = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return Outcome("ok", response.json(), status)
                    except ValueError:
                        return Outcome("invalid", status=status, message="answer is not JSON")
                if status == 404:
                    return Outcome("unknown", status=status, message=_message(response))
                if status == 429:
                    self.counters.add("throttled")
                    throttles += 1
                    pause = _retry_after(response)
                    pause = self.policy.backoff(throttles) if pause is None else pause
                    if throttles >= self.policy.throttled_attempts or pause > self.policy.max_retry_after:
                        return Outcome("down", status=status, message="rate limited without end")
                    self.bucket.hold(pause)  # every worker waits, not only this one
                    continue
                if status < 500:
                    return Outcome("invalid", status=status, message=_message(response))
                problem, wait = f"HTTP {status}: {_message(response)}", _retry_after(response)
            failures += 1
            delay = self.policy.backoff(failures) if wait is None else wait
            if failures >= self.policy.attempts or delay > self.policy.max_retry_after:
                return Outcome("down", message=problem)
            self.counters.add("retries")
            self.stop.wait(delay)
        return Outcome("skipped")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))[:200]
    except (ValueError, AttributeError):
        return response.text[:200]


# --- records to rows ------------------------------------------------------------------


def user_row(user_id: int, body: Any, fetched_at: datetime) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("user_id") != user_id:
        raise ValueError(f"answer is not user {user_id}")
    return {
        "user_id": user_id,
        "age": body.get("age"),
        "occupation": body.get("occupation"),
        "gender": body.get("gender"),
        "fetched_at": fetched_at,
    }


def movie_row(movie_id: str, body: Any, fetched_at: datetime) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("id") != movie_id or not isinstance(body.get("title"), str):
        raise ValueError(f"answer is not movie {movie_id}")
    row = {name: body.get(name) for name in MOVIES.names if name != "fetched_at"}
    row["genres"] = [genre["name"] for genre in body.get("genres") or []]
    release = body.get("release_date")
    row["release_date"] = date.fromisoformat(release) if release else None  # TMDB writes "" when unknown
    for name in _JSON_FIELDS:
        value = body.get(name)
        row[name] = None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    row["fetched_at"] = fetched_at
    return row


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def _typed_table(rows: list[dict[str, Any]], schema: pa.Schema) -> tuple[pa.Table, int]:
    """The rows as a table, leaving out (and counting) any that do not fit the schema:
    one odd record never sinks the run."""
    try:
        return _table(rows, schema), 0
    except (pa.ArrowException, TypeError, ValueError):
        pass
    good = []
    for row in rows:
        try:
            _table([row], schema)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            log.warning("catalog record does not fit %s: %s", schema.names[0], exc)
            continue
        good.append(row)
    return _table(good, schema), len(rows) - len(good)


# --- the run ----------------------------------------------------------------------------------


def sync_catalog(
    settings: Settings,
    *,
    run_id: str | None = None,
    policy: RetryPolicy | None = None,
    client_id: str = CLIENT_ID,
    concurrency: int = CONCURRENCY,
    commit_every: int | None = None,
) -> dict[str, Any]:
    """Fetch and store the users and movies seen in events but not stored yet, then (with
    MOVIEREC_CATALOG_SWEEP_USERS, within the cap) users never seen; returns a report.

    Users and movies are asked for in turns (users of the newest events first), and what was
    fetched is stored every ``commit_every`` records (default: a minute of requests), one file
    per table each time: a run of hours is usable by a retrain from its first minute, and a run
    killed midway loses at most its last minute.

    ``status`` is "complete", or "capped" when more than MOVIEREC_CATALOG_MAX_FETCHES
    were missing (the next run goes on). If the API is down, what was fetched is
    stored and ``CatalogDelayed`` is raised, its ``report`` saying "delayed".
    """
    policy = policy or RetryPolicy()
    started = datetime.now(UTC)
    run = run_id or started.strftime("%Y%m%dT%H%M%S%fZ")
    seen_users, seen_movies = seen_ids(settings)
    stored_users = _stored(settings, "users", "user_id")
    stored_movies = _stored(settings, "movies", "id")
    unknown = recently_unknown(settings, started)
    missing_movies = sorted(seen_movies - stored_movies - unknown["movie"])
    unknown_users = {int(u) for u in unknown["user"]}
    missing_users = [u for u in seen_users if u not in stored_users and u not in unknown_users]
    todo = in_turns([("movie", m) for m in missing_movies], [("user", u) for u in missing_users])
    capped = len(todo) > settings.catalog_max_fetches
    todo = todo[: settings.catalog_max_fetches]
    known_users = set(seen_users) | stored_users
    # spare fetches go to users never seen yet, so the serving file can list every user
    swept = (
        unseen_users(known_users, known_users | unknown_users, settings.catalog_max_fetches - len(todo))
        if settings.catalog_sweep_users else []
    )  # fmt: skip
    todo += [("user", u) for u in swept]
    log.info(
        "catalog run %s: %d users and %d movies seen, %d users and %d movies missing, "
        "%d unseen users swept, fetching %d",
        run,
        len(seen_users),
        len(seen_movies),
        len(missing_users),
        len(missing_movies),
        len(swept),
        len(todo),
    )

    step = max(1, commit_every or round(settings.catalog_rate * COMMIT_SECONDS))
    bucket = TokenBucket(settings.catalog_rate, burst=max(1, round(settings.catalog_rate / 4)))
    stop = threading.Event()
    headers = {"X-Client-Id": client_id, "Accept": "application/json"}
    outcomes: dict[tuple[str, Any], Outcome] = {}
    stores: list[dict[str, Any]] = []
    with httpx.Client(base_url=settings.catalog_api_url, headers=headers, timeout=policy.timeout) as client:
        fetcher = _Fetcher(client, bucket, policy, stop)

        def fetch(item: tuple[str, Any]) -> Outcome:
            kind, ident = item
            outcome = fetcher.get(f"/{kind}/{quote(str(ident), safe='')}")
            if outcome.kind == "down":
                stop.set()  # the API is down: stop asking, keep what we have
            return outcome

        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="catalog") as pool:
            for number, first in enumerate(range(0, len(todo), step)):
                chunk = todo[first : first + step]
                got = dict(zip(chunk, pool.map(fetch, chunk), strict=True))
                outcomes |= got
                stores.append(_store(settings, run if first == 0 else f"{run}-{number:04d}", started, got))
                log.info("catalog run %s: %d of %d asked, stored", run, first + len(chunk), len(todo))
                if stop.is_set():
                    break
    for item in todo[len(outcomes) :]:  # never asked: the API went down first
        outcomes[item] = Outcome("skipped")

    report = _merged(run, stores)
    down = [o.message for o in outcomes.values() if o.kind == "down"]
    sweep = [outcomes[("user", u)].kind for u in swept]
    swept_ok, swept_unknown = sweep.count("ok"), sweep.count("unknown")
    report["users"]["fetched"] -= swept_ok  # of the seen users; the sweep's count on its own
    report["users"]["unknown_new"] -= swept_unknown
    for kind, seen, missing, known in (
        ("users", set(seen_users), missing_users, unknown_users),
        ("movies", seen_movies, missing_movies, unknown["movie"]),
    ):
        report[kind] |= {"seen": len(seen), "missing": len(missing), "unknown_known": len(known & seen)}
    report["users"] |= {"swept": len(swept), "swept_fetched": swept_ok, "swept_unknown": swept_unknown}
    report |= {
        "status": "delayed" if down else "capped" if capped else "complete",
        "remaining": sum(report[k]["missing"] - report[k]["fetched"] - report[k]["unknown_new"]
                         for k in ("users", "movies")),
        "requests": fetcher.counters.requests,
        "throttled": fetcher.counters.throttled,
        "retries": fetcher.counters.retries,
        "error": down[0] if down else None,
    }  # fmt: skip
    log.info("catalog run %s: %s", run, json.dumps(report))
    if down:
        log.warning(
            "catalog API down (%s): run %s delayed, %d stored", report["error"], run, report["fetched"]
        )
        raise CatalogDelayed(report)
    return report


def in_turns(first: list[Any], second: list[Any]) -> list[Any]:
    """The items of both lists alternately, ``first``'s first, then the rest of the longer one.

    Movies and users in turns: the first model needs users' demographics (a user without them
    has no group) as much as movies' runtimes (whose absence the retrain makes up for from
    the longest watch seen), and tens of thousands of movies first would be many minutes.
    """
    merged = [item for pair in zip(first, second, strict=False) for item in pair]
    shorter = min(len(first), len(second))
    return merged + first[shorter:] + second[shorter:]


def _merged(run: str, stores: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of a run's stores (one per commit)."""
    report: dict[str, Any] = {
        "run": run,
        "users": {"fetched": 0, "unknown_new": 0},
        "movies": {"fetched": 0, "unknown_new": 0},
        "fetched": 0,
        "unknown_new": 0,
        "invalid": 0,
        "files": [],
        "quality": {},
    }
    for stored in stores:
        for kind in ("users", "movies"):
            for name in ("fetched", "unknown_new"):
                report[kind][name] += stored[kind][name]
        for name in ("fetched", "unknown_new", "invalid"):
            report[name] += stored[name]
        report["files"] += stored["files"]
        for key, check in stored["quality"].items():
            merged = report["quality"].setdefault(key, {"success": True, "failed_expectations": []})
            merged["success"] = merged["success"] and check["success"]
            merged["failed_expectations"] += [
                name for name in check["failed_expectations"] if name not in merged["failed_expectations"]
            ]
    return report


def _store(
    settings: Settings, run: str, started: datetime, outcomes: dict[tuple[str, Any], Outcome]
) -> dict[str, Any]:
    """Write the run's users, movies and unknown ids (one file each, if any); what was written."""
    rows: dict[str, list[dict[str, Any]]] = {"user": [], "movie": [], "unknown": []}
    invalid = 0
    for (kind, ident), outcome in outcomes.items():
        if outcome.kind == "ok":
            try:
                make_row = user_row if kind == "user" else movie_row
                rows[kind].append(make_row(ident, outcome.body, started))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("catalog %s %s: unusable answer (%s)", kind, ident, exc)
                invalid += 1
        elif outcome.kind == "unknown":
            rows["unknown"].append(
                {"kind": kind, "id": str(ident), "status": outcome.status, "message": outcome.message,
                 "checked_at": started}
            )  # fmt: skip
        elif outcome.kind == "invalid":
            log.warning("catalog %s %s: %s %s", kind, ident, outcome.status, outcome.message)
            invalid += 1
    files, written, checks = [], {}, {}
    for key, name in (("user", "users"), ("movie", "movies"), ("unknown", "catalog_unknown")):
        table, bad = _typed_table(rows[key], TABLES[name])
        invalid += bad
        written[key] = table.num_rows
        if table.num_rows and key in SUITES:
            checks[key] = _check(settings, SUITES[key], table, run)
        if table.num_rows:
            path = lake.table_dir(settings, name) / lake.batch_file_name(run)
            lake.write_parquet_atomically(table, path)
            files.append(lake.relative_path(settings, path))
    new_unknown = {kind: sum(row["kind"] == kind for row in rows["unknown"]) for kind in ("user", "movie")}
    return {
        "run": run,
        "users": {"fetched": written["user"], "unknown_new": new_unknown["user"]},
        "movies": {"fetched": written["movie"], "unknown_new": new_unknown["movie"]},
        "fetched": written["user"] + written["movie"],
        "unknown_new": written["unknown"],
        "invalid": invalid,
        "files": files,
        "quality": checks,
    }


SUITES = {"user": "users", "movie": "movies"}


def _check(settings: Settings, suite: str, table: pa.Table, run: str) -> dict[str, Any]:
    """The site's records validated by their GX suite. They are stored either way (they are what the
    site said); a failure is a warning and is visible in the data docs and the run's report."""
    from movierec.ingest.quality import validate_frame

    check = validate_frame(settings, suite, table, run_name=f"catalog-{run}")
    if not check["success"]:
        log.warning("catalog %s %s: expectations failed: %s", suite, run, check["failed_expectations"])
    return {"success": check["success"], "failed_expectations": check["failed_expectations"]}
