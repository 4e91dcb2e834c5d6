"""The recommendation service under wrk, beside a Flask + SQLite baseline and nginx static files.

One run, same machine, same users:
1. a full-scale serving file (1M users, 20 ids each) is generated, and a copy
   under a second version for the swap test;
2. three servers answer ``GET /recommend/<id>`` for the same lists: ``movierec
   serve`` (its workers, provenance to a private real broker), Flask under
   gunicorn (same number of sync workers, same SQLite lookup), and nginx (same
   number of workers) serving one static file per sampled user; a fourth,
   ``sanic-bare`` (bench/sanic_bare.py: the same route answering a constant
   line), is the framework's ceiling on this machine: what is left for the
   service's own work (lookup, experiment, provenance, metrics); ``sanic-lookup`` and
   ``sanic-record`` are the ladder between the two, the same app with the service's
   ``Model.lookup``, then also its provenance record, added (each step's CPU per answer
   is that part's cost under load); ``sanic-batch``, the records handed to librdkafka in
   batches instead, is the alternative to the last step;
3. ``wrk`` (closed loop) against each: req/s, p50, p99, and the ratios; also each server's
   CPU time per answer (its process group's user + system time over the run), whose ratio
   holds on a box loaded by others where req/s does not;
4. a fixed-rate check: ~2,000 req/s (wrk with a per-request delay) against the
   service: p50/p99 at that rate;
5. the swap test: ten re-pointings of ``current`` between the two full files
   while wrk runs; failed or non-200 answers must be 0.

``--profile FILE``: py-spy samples one worker of ``movierec`` (200/s, through its first
closed-loop run) into FILE (collapsed stacks, ``py-spy record --format raw``) and the report
lists where that worker's time goes: the share of samples in each of the handler's parts and
the functions most often on top of the stack.

The per-client rate limit's cost (docs/security-serving.md): two more ``movierec serve``
instances beside the first, same file and workers. ``movierec`` itself sees wrk as the site's
client (127.0.0.1, the default allow-list: one set lookup per request); ``movierec-bucket``
allow-lists another address, so every request of wrk takes a token of a bucket whose rate is
too high ever to refuse; ``movierec-nolimit`` has the limit switched off
(``MOVIEREC_SERVER_CLIENT_RATE=0``). ``--servers`` picks which servers run (default: all).

Two in-process figures follow the report: Sanic's ``router.get`` per ``/recommend/<id>`` for the
service's ``<segment:path>`` route, a plain ``<segment>`` and both, and the CPU of one
``Model.lookup`` with the file read per page (as served) and through a memory map.

Every request picks a random user of a sample (wrk's lua script), the same sample
for all three (nginx needs one file per user; the service and Flask look up the
full file). Run on demand:

    .venv/bin/python bench/bench_serving.py [--users 1000000] [--sample 100000] [--seconds 10] \
        [--servers movierec,movierec-bucket,movierec-nolimit,flask,nginx,sanic-bare,sanic-lookup,...] \
        [--profile FILE]

Needs Debian's wrk and nginx (``apt-get install -y wrk nginx``) and the bench-only
Python packages of requirements.txt (flask, gunicorn; py-spy for ``--profile``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from movierec import serving_file
from movierec.ops.broker import broker
from movierec.ops.broker.broker import free_port
from movierec.settings import REPO_ROOT, Settings

WORKERS = 2
SERVERS = (
    "movierec",
    "movierec-bucket",
    "movierec-nolimit",
    "flask",
    "nginx",
    "sanic-bare",
    "sanic-lookup",
    "sanic-record",
    "sanic-batch",
    "sanic-dict",
    "sanic-floor",
)
# bench/sanic_bare.py's factories: the framework ceiling, then the service's parts added one by one
SANIC_LADDER = {
    "sanic-bare": "create_app",
    "sanic-lookup": "create_lookup_app",
    "sanic-record": "create_recorded_app",
    "sanic-batch": "create_batched_app",  # not a step: sanic-record's records handed over in batches
    # not steps either: the lookup from a dict of every line in memory, then also batched records:
    # the least a worker can spend per answer on a lookup and a record, whatever the store
    "sanic-dict": "create_dict_app",
    "sanic-floor": "create_floor_app",
}
# the limit's variants of movierec serve: wrk (127.0.0.1) as the site / as a client never refused / no limit
LIMIT_ENV = {
    "movierec": {},
    "movierec-bucket": {"MOVIEREC_SERVER_SITE_CLIENTS": "192.0.2.1", "MOVIEREC_SERVER_CLIENT_RATE": "1e12",
                        "MOVIEREC_SERVER_CLIENT_BURST": "1000000000"},
    "movierec-nolimit": {"MOVIEREC_SERVER_CLIENT_RATE": "0"},
}  # fmt: skip
VERSION_A, VERSION_B = "20261128T040000Z", "20261128T050000Z"  # serving ids: the server checks names
PICK_LUA = """
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
math.randomseed(%(seed)d)
request = function()
  return wrk.format("GET", "/recommend/" .. ids[math.random(#ids)])
end
%(extra)s
"""
DELAY_LUA = "delay = function() return %(ms)d end"
# the parts of a worker's request path, by a function on the sampled stack (server/ and provenance)
PROFILE_PARTS = {
    "handler (_answer, all of it)": ("_answer", "server/app.py"),
    "  SQLite lookup": ("lookup", "server/store.py"),
    "  provenance: record JSON": ("answer_record", "server/provenance.py"),
    "  provenance: produce (librdkafka's queue)": ("send", "server/provenance.py"),
    "  metrics tally": ("answered", "server/metrics.py"),
    "  id parse": ("parse_segment", "server/userid.py"),
    "rate-limit check": ("refused", "server/app.py"),
    "Sanic: response headers and write": ("send", "sanic/response/types.py"),
    "  header encoding (server/answer.py)": ("processed_headers", "server/answer.py"),
    "  header formatting (Sanic's)": ("format_http1_response", "sanic/headers.py"),
    "background loop (swaps, flushes)": ("_watch", "server/app.py"),
}


def need_tools() -> None:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench_serving needs {' and '.join(missing)}: apt-get install -y wrk nginx")
    try:
        import flask  # noqa: F401
        import gunicorn  # noqa: F401
    except ImportError:
        sys.exit("bench_serving needs flask and gunicorn: pip install -r requirements.txt -c constraints.txt")


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- data ------------------------------------------------------------------------------------------------


def movie_pool(count: int = 27_000) -> list[str]:
    rng = random.Random(1)
    words = ["the", "night", "river", "last", "star", "city", "love", "war", "dark", "blue", "road", "house"]
    return [f"{'+'.join(rng.sample(words, 2))}+{n}+{rng.randint(1930, 2026)}" for n in range(count)]


def write_full_file(path: Path, version: str, users: int) -> None:
    """A serving file per DESIGN.md with ``users`` users of 20 ids each (progress every 200,000)."""
    pool = movie_pool()
    rng = random.Random(7)
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("CREATE TABLE recs(user_id INTEGER PRIMARY KEY, items TEXT NOT NULL)")
    connection.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
    step = 200_000
    for start in range(1, users + 1, step):
        rows = ((u, ",".join(rng.sample(pool, 20))) for u in range(start, min(start + step, users + 1)))
        connection.executemany("INSERT INTO recs VALUES (?, ?)", rows)
        progress(f"  {path.name}: {min(start + step - 1, users):,} of {users:,} users")
    meta = {
        "model_version": version,
        "created_at": "2026-11-28T04:00:00+00:00",
        "git_commit": "bench",
        "params": json.dumps({"bench": True}),
        "data_manifest": json.dumps({"files": []}),
        "metrics": json.dumps({}),
        "row_count": str(users),
        "fallback": ",".join(pool[:20]),
    }
    connection.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    connection.commit()
    connection.close()


def copy_as_version(source: Path, target: Path, version: str) -> None:
    shutil.copyfile(source, target)
    with sqlite3.connect(target) as connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'model_version'", (version,))
    connection.close()


def point_current(serving: Path, version: str) -> None:
    staging = serving / f".current-{version}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(serving_file.file_name(version))
    os.replace(staging, serving / "current")


def write_static_files(serving_file: Path, sample: list[int], root: Path) -> None:
    """nginx's copy: root/recommend/<id> holding the same line as the serving file."""
    folder = root / "recommend"
    folder.mkdir(parents=True)
    connection = sqlite3.connect(f"file:{serving_file}?mode=ro&immutable=1", uri=True)
    for user_id in sample:
        (folder / str(user_id)).write_text(
            connection.execute("SELECT items FROM recs WHERE user_id = ?", (user_id,)).fetchone()[0]
        )
    connection.close()


# --- servers ---------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(
    name: str, command: list[str], port: int, log: Path, probe: str, env: dict[str, str] | None = None
) -> Server:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}{probe}", timeout=2).status_code == 200:
                time.sleep(1.0)  # let every worker finish starting
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    sys.exit(f"{name} did not come up: {log.read_text()[-2000:]}")


def nginx_conf(root: Path, port: int, work: Path) -> Path:
    conf = work / "nginx.conf"
    # open_file_cache keeps descriptors open: per worker it must stay well under `ulimit -n`
    conf.write_text(
        f"""worker_processes {WORKERS};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx-tmp;
  proxy_temp_path {work}/nginx-tmp;
  fastcgi_temp_path {work}/nginx-tmp;
  uwsgi_temp_path {work}/nginx-tmp;
  scgi_temp_path {work}/nginx-tmp;
  open_file_cache max=5000 inactive=60s;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    default_type text/plain;
  }}
}}
"""
    )
    return conf


# --- wrk -------------------------------------------------------------------------------------------------


@dataclass
class Result:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    failed: int  # socket errors + non-2xx answers
    cpu_us: float = 0.0  # CPU time of the server's processes per answer (0: not measured)
    broker_us: float = 0.0  # CPU time of the private broker per answer over the same run


def median_run(runs: list[Result]) -> Result:
    """The run with the median req/s (the upper one of an even count)."""
    return sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2]


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> Result:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    total = int(re.search(r"(\d+) requests in", output).group(1))
    failed = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Result(rate, p50, p99, total, failed + (int(non_2xx.group(1)) if non_2xx else 0))


def run_wrk(url: str, script: Path, seconds: int, connections: int, threads: int = 2) -> Result:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = parse_wrk(output)
    if result.failed or not result.requests:
        print(output, flush=True)  # wrk's own account of what went wrong
    return result


def start_profile(url: str, seconds: int, out: Path) -> subprocess.Popen:
    """py-spy on the worker that answers /healthz (one of the service's workers)."""
    if shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        sys.exit("--profile needs py-spy: pip install -r requirements.txt -c constraints.txt")
    pid = httpx.get(f"{url}/healthz", timeout=5).json()["pid"]
    spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "200"]
    spy += ["--duration", str(seconds), "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_summary(raw: Path, top: int = 12) -> list[str]:
    """Share of one worker's samples per part of the request path, and the top leaf functions."""
    samples = 0
    parts = dict.fromkeys(PROFILE_PARTS, 0)
    leaves: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        for part, (function, file) in PROFILE_PARTS.items():
            # py-spy names a frame "Class.function (path/file.py:line)"
            if any(file in frame and frame.split(" (")[0].rsplit(".", 1)[-1] == function for frame in frames):
                parts[part] += count
        leaf = re.sub(r"\(\S*?([^/ ]+/[^/ ]+?)(:\d+)?\)$", r"(\1)", frames[-1])  # last two path parts
        leaves[leaf] = leaves.get(leaf, 0) + count
    if not samples:
        return ["profile: no samples"]
    lines = [f"where one worker's time goes (py-spy, {samples:,} samples of its busy time):"]
    lines += [f"  {part:<42} {count / samples:6.1%}" for part, count in parts.items()]
    lines.append("  top of the stack:")
    for leaf, count in sorted(leaves.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"    {count / samples:6.1%}  {leaf[:100]}")
    return lines


def proc_stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the name: pgrp is [2], utime and stime [11] and [12]."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def cpu_seconds(fields: list[str]) -> float:
    """User + system CPU seconds of a process (all its threads) from its ``proc_stat`` fields."""
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(group: int) -> float:
    """User + system CPU seconds so far of every live process in process group ``group`` (a server)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = proc_stat(entry.name)
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == group:
            total += cpu_seconds(fields)
    return total


def measured_run(server: Server, script: Path, seconds: int, connections: int, broker_pid: int) -> Result:
    """``run_wrk`` plus the server's own CPU per answer: robust to a loaded box, unlike req/s; and
    the broker's, which shares the box's cores with the server here (in production it is elsewhere)."""
    before, broker_before = group_cpu_seconds(server.process.pid), cpu_seconds(proc_stat(broker_pid))
    result = run_wrk(server.url, script, seconds, connections)
    spent = group_cpu_seconds(server.process.pid) - before
    if result.requests:
        result.cpu_us = spent / result.requests * 1e6
        result.broker_us = (cpu_seconds(proc_stat(broker_pid)) - broker_before) / result.requests * 1e6
    return result


def lua_script(work: Path, ids_file: Path, name: str, delay_ms: int | None = None) -> Path:
    extra = DELAY_LUA % {"ms": delay_ms} if delay_ms else ""
    script = work / f"{name}.lua"
    script.write_text(PICK_LUA % {"ids": ids_file, "seed": 42, "extra": extra})
    return script


def metric(ops_url: str, name: str) -> float:
    """A sample of the service's metrics, from its operator port."""
    text = httpx.get(f"{ops_url}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


# --- the run ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=100_000, help="users requested (nginx: one file each)")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration of each closed-loop run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=2_000, help="requests/s of the fixed-rate check")
    parser.add_argument("--swaps", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"of: {', '.join(SERVERS)}")
    parser.add_argument("--ports", type=int, help="first of 16 consecutive ports to use (default: free ones)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="closed-loop runs per server (median), orders rotated"
    )
    parser.add_argument("--profile", type=Path, help="py-spy one movierec worker in round 1 into FILE")
    args = parser.parse_args()
    chosen = [name for name in SERVERS if name in args.servers.split(",")]
    if "movierec" not in chosen or set(args.servers.split(",")) - set(SERVERS):
        sys.exit(f"--servers: movierec and any of {', '.join(SERVERS)}")
    need_tools()

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    work.chmod(0o755)  # nginx's workers run as an unprivileged user and must read the static files
    home = work / "home"
    serving = home / "serving"
    serving.mkdir(parents=True)
    servers: list[Server] = []
    numbers = iter(range(args.ports, args.ports + 16)) if args.ports else None

    def port() -> int:
        return next(numbers) if numbers else free_port()

    kafka = broker.private_settings(
        work / "kafka",
        MOVIEREC_KAFKA_HEAP="512m",
        MOVIEREC_KAFKA_BOOTSTRAP=f"127.0.0.1:{port()}",
        MOVIEREC_KAFKA_CONTROLLER_PORT=str(port()),
    )
    try:
        progress(f"writing a {args.users:,}-user serving file and a copy as a second version in {serving}")
        first, second = serving_file.file_path(serving, VERSION_A), serving_file.file_path(serving, VERSION_B)
        write_full_file(first, VERSION_A, args.users)
        copy_as_version(first, second, VERSION_B)
        point_current(serving, VERSION_A)
        progress(f"  {first.stat().st_size / 1e6:.0f} MB each")

        sample = random.Random(3).sample(range(1, args.users + 1), min(args.sample, args.users))
        ids_file = work / "ids.txt"
        ids_file.write_text("\n".join(map(str, sample)) + "\n")
        if "nginx" in chosen:
            progress(f"writing {len(sample):,} static files for nginx")
            write_static_files(first, sample, work / "static")

        progress("starting a private Kafka broker for the service's provenance records")
        broker_pid = broker.start(kafka)
        broker.ensure_topics(kafka)

        ports = {name: port() for name in SERVERS}
        ops_ports = {name: port() for name in LIMIT_ENV}
        progress(f"starting {', '.join(chosen)}, {WORKERS} workers each")
        probe = f"/recommend/{sample[0]}"  # nginx has only the sampled users
        for name in chosen:
            ops_port = ops_ports.get(name)
            servers.append(start_server(name, work, ports[name], ops_port, first, home, kafka, probe))
        service = servers[0]
        ops_url = f"http://127.0.0.1:{ops_ports['movierec']}"
        pick = lua_script(work, ids_file, "pick")

        for server in servers:
            run_wrk(server.url, pick, 2, args.connections)  # warm-up: page cache, connections
        runs: dict[str, list[Result]] = {server.name: [] for server in servers}
        profile_lines: list[str] = []
        for round_number in range(args.rounds):  # each round in another order: drift hits all alike
            turn = round_number % len(servers)
            for server in servers[turn:] + servers[:turn]:
                progress(
                    f"round {round_number + 1}: wrk -c{args.connections} -d{args.seconds}s, {server.name}"
                )
                spy = None
                if args.profile and round_number == 0 and server is service:
                    spy = start_profile(server.url, args.seconds, args.profile)
                run = measured_run(server, pick, args.seconds, args.connections, broker_pid)
                runs[server.name].append(run)
                if spy is not None:
                    spy.wait(timeout=60)
                    profile_lines = profile_summary(args.profile)
        results = {name: median_run(found) for name, found in runs.items()}

        connections = 20
        delay = max(1, round(connections * 1000 / args.rate))
        paced = lua_script(work, ids_file, "paced", delay)
        progress(f"fixed rate: {connections} connections, {delay} ms between requests (~{args.rate} req/s)")
        fixed = run_wrk(service.url, paced, args.seconds, connections)

        progress(f"swap test: {args.swaps} re-pointings of current while wrk runs")
        swaps_before = metric(ops_url, "movierec_model_swaps_total")
        swap_seconds = args.swaps * 1.0 + 3
        holder: dict[str, Result] = {}
        load = threading.Thread(
            target=lambda: holder.update(r=run_wrk(service.url, pick, int(swap_seconds), args.connections))
        )
        load.start()
        time.sleep(1.0)
        for number in range(args.swaps):
            point_current(serving, VERSION_B if number % 2 == 0 else VERSION_A)
            time.sleep(1.0)
        load.join()
        swapped = holder["r"]
        swaps_seen = metric(ops_url, "movierec_model_swaps_total") - swaps_before

        report(results, fixed, args.rate, swapped, swaps_seen, args)
        lookups = ", ".join(f"{case} {us:.2f}" for case, us in lookup_cpu_us(first, sample).items())
        print(f"in process, Model.lookup of a sampled user (CPU us, best of 5): {lookups}")
        if {"sanic-record", "sanic-floor"} & set(chosen):
            costs = record_cpu_us(kafka, first, sample)
            records = ", ".join(f"{case} {us:.2f}" for case, us in costs.items())
            print(f"in process, a served record at ~10,000/s (CPU us, best of 3): {records}")
        if profile_lines:
            print("\n" + "\n".join(profile_lines))
    finally:
        for server in servers:
            server.stop()
        broker.stop(kafka)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def start_server(
    name: str, work: Path, port: int, ops_port: int | None, first: Path, home: Path, kafka: object, probe: str
) -> Server:
    """One of SERVERS on ``port``, answering for the users of ``first`` (the full serving file)."""
    if name in LIMIT_ENV:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIEREC_", "PROMETHEUS_"))}
        env |= {
            "MOVIEREC_HOME": str(home),
            "MOVIEREC_SERVER_PORT": str(port),
            "MOVIEREC_SERVER_OPS_PORT": str(ops_port),
            "MOVIEREC_SERVER_WORKERS": str(WORKERS),
            "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,  # type: ignore[attr-defined]
            **LIMIT_ENV[name],
        }
        serve = [sys.executable, "-m", "movierec.cli", "serve"]
        return start(name, serve, port, work / f"{name}.log", probe, env)
    if name == "flask":
        flask_app = f"bench.flask_baseline:create_app({str(first)!r})"
        gunicorn = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
        gunicorn += ["--log-level", "warning", flask_app]
        return start("flask", gunicorn, port, work / "flask.log", probe)
    if name == "nginx":
        conf = nginx_conf(work / "static", port, work)
        (work / "nginx-tmp").mkdir()
        nginx = ["nginx", "-c", str(conf), "-p", str(work)]
        return start("nginx", nginx, port, work / "nginx.log", probe)
    bare = [sys.executable, "-m", "sanic", f"bench.sanic_bare:{SANIC_LADDER[name]}", "--factory"]
    bare += ["--workers", str(WORKERS), "--port", str(port), "--no-access-logs"]
    env = os.environ | {"BENCH_SERVING_FILE": str(first), "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap}  # type: ignore[attr-defined]
    return start(name, bare, port, work / f"{name}.log", probe, env)


def report(
    results: dict[str, Result],
    fixed: Result,
    rate: int,
    swapped: Result,
    swaps_seen: float,
    args: argparse.Namespace,
) -> None:
    ours = results["movierec"]
    print()
    print(
        f"closed loop, wrk -t2 -c{args.connections} -d{args.seconds}s (median of {args.rounds}), "
        f"{WORKERS} workers, "
        f"{args.users:,} users in the file, {args.sample:,} requested"
    )
    print(
        f"{'server':<17} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7} {'cpu us/req':>10} "
        f"{'broker':>7}  "
        "movierec is (by req/s; by CPU per answer)"
    )
    for name, result in results.items():
        ratio = ""
        if name != "movierec":
            ratio = f"{ours.requests_per_s / result.requests_per_s:.2f}x {name}" if result.requests else "-"
            if ours.cpu_us and result.cpu_us:
                ratio += f"; {result.cpu_us / ours.cpu_us:.2f}x"
        print(
            f"{name:<17} {result.requests_per_s:>10,.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f} "
            f"{result.failed:>7} {result.cpu_us:>10.1f} {result.broker_us:>7.1f}  {ratio}"
        )
    print(
        "cpu us/req: user+system CPU of the server's process group over the run / answers (the median "
        "run's); broker: the private broker's CPU over the same run / answers, not in cpu us/req: it "
        "shares the 2 cores here"
    )
    print("goals: >=0.5x nginx, >=5x flask; sanic-bare (a constant answer) is the framework's ceiling here")
    steps = ("sanic-bare", "sanic-lookup", "sanic-record", "movierec")
    ladder = [name for name in steps if results.get(name) and results[name].cpu_us]
    if len(ladder) > 2:
        print("the ladder, each step a part of the service added to the last (CPU us per answer, its step):")
        for before, name in zip([None, *ladder], ladder, strict=False):
            step = "" if before is None else f"  {results[name].cpu_us - results[before].cpu_us:+.1f}"
            print(f"  {name:<17} {results[name].cpu_us:>7.1f}{step}")
        batch, lookup = results.get("sanic-batch"), results.get("sanic-lookup")
        if batch and lookup and batch.cpu_us and lookup.cpu_us:
            step = batch.cpu_us - lookup.cpu_us
            how = "sanic-record's records with produce_batch, no Kafka timestamps"
            print(f"  {'sanic-batch':<17} {batch.cpu_us:>7.1f}  {step:+.1f} on sanic-lookup ({how})")
    floor_report(results)
    limited = {name: results[name] for name in LIMIT_ENV if name in results}
    if len(limited) > 1:
        print("the per-client rate limit, per request (from req/s; wrk's 2 threads share the machine):")
        base = limited.get("movierec-nolimit") or ours
        for name, result in limited.items():
            if result.requests and base.requests:
                extra_us = (1 / result.requests_per_s - 1 / base.requests_per_s) * 1e6 * WORKERS
                ratio = result.requests_per_s / base.requests_per_s
                print(f"  {name:<17} {ratio:.3f}x of {base_name(base, limited)}'s req/s, "
                      f"{extra_us:+.1f} us of worker time per request")  # fmt: skip
        calls = ", ".join(f"{case} {ns:.0f} ns" for case, ns in limiter_call_ns().items())
        print(f"  in process, ClientLimiter.wait per call (best of 5 x 1M): {calls}")
    routes = ", ".join(f"{shape} {ns:,.0f} ns" for shape, ns in router_get_ns().items())
    print(f"in process, Sanic's router.get per /recommend/<id> (CPU, best of 9 x 50,000): {routes}")
    print()
    print(
        f"fixed rate (~{rate} req/s asked): {fixed.requests_per_s:,.0f} req/s, "
        f"p50 {fixed.p50_ms:.2f} ms, p99 {fixed.p99_ms:.2f} ms, failed {fixed.failed}  (goal: p99 <= 5 ms)"
    )
    print(
        f"swap test: {args.swaps} swaps ({swaps_seen:.0f} worker swaps seen), {swapped.requests:,} requests, "
        f"{swapped.requests_per_s:,.0f} req/s, p99 {swapped.p99_ms:.2f} ms, "
        f"failed or non-200: {swapped.failed}  (goal: 0)"
    )


def floor_report(results: dict[str, Result]) -> None:
    """The in-memory rungs: each one's step, and the most a server doing their work could reach."""
    bare, in_memory, floor = (results.get(name) for name in ("sanic-bare", "sanic-dict", "sanic-floor"))
    if not (bare and bare.cpu_us and in_memory and in_memory.cpu_us):
        return
    print("in memory, beside the ladder (CPU us per answer, its step):")
    step = in_memory.cpu_us - bare.cpu_us
    print(f"  {'sanic-dict':<17} {in_memory.cpu_us:>7.1f}  {step:+.1f} on sanic-bare (every line in a dict)")
    if floor and floor.cpu_us and floor.requests:
        step = floor.cpu_us - in_memory.cpu_us
        print(f"  {'sanic-floor':<17} {floor.cpu_us:>7.1f}  {step:+.1f} on sanic-dict (and batched records)")
        by_cpu, by_rate = bare.cpu_us / floor.cpu_us, floor.requests_per_s / bare.requests_per_s
        print(f"  sanic-floor is {by_cpu:.2f}x sanic-bare by CPU, {by_rate:.2f}x by req/s: the most a server")
        print("  that looks up and records each answer could reach here, with both changes and nothing else")


def limiter_call_ns(calls: int = 1_000_000) -> dict[str, float]:
    """In-process ns per ``ClientLimiter.wait``: what the limit adds to a request besides the middleware."""
    import timeit

    from server.clients import ClientLimiter, SiteClients

    limiter = ClientLimiter(SiteClients("127.0.0.1,10.0.0.0/8"), 1e12, 10**9, workers=WORKERS)
    cases = {"site address": "127.0.0.1", "site network": "10.1.2.3", "other client (a token)": "192.0.2.7"}
    return {
        case: min(timeit.repeat(lambda a=address: limiter.wait(a), number=calls, repeat=5)) / calls * 1e9
        for case, address in cases.items()
    }


def router_get_ns(paths: int = 50_000, repeat: int = 9) -> dict[str, float]:
    """In-process CPU ns per ``router.get`` of a ``/recommend/<id>`` (ids never repeat within Sanic's
    1,024-entry route cache, as with 100,000 users): the service's ``<segment:path>`` route (it also
    takes ids with a slash, to answer them 400) against a plain ``<segment>`` and both routes."""
    from sanic import Sanic
    from sanic.response import text

    shapes = {
        "<segment:path>": ["/recommend/<segment:path>"],
        "<segment>": ["/recommend/<segment>"],
        "both": ["/recommend/<segment>", "/recommend/<segment:path>"],
    }
    rng = random.Random(11)
    ids = [f"/recommend/{rng.randint(1, 10**6)}" for _ in range(paths)]
    getters = {}
    for number, (shape, routes) in enumerate(shapes.items()):
        app = Sanic(f"bench_router_{number}")
        for index, route in enumerate(routes):
            app.add_route(lambda request, segment: text(segment), route, name=f"user{index}")
        app.add_route(lambda request: text(""), "/recommend", name="nobody")
        app.add_route(lambda request: text(""), "/healthz", name="healthz")
        app.router.finalize()
        getters[shape] = app.router.get
    best = dict.fromkeys(shapes, float("inf"))
    for _ in range(repeat):  # interleaved: load from others hits every shape alike
        for shape, get in getters.items():
            started = time.process_time()
            for path in ids:
                get(path, "GET", None)
            best[shape] = min(best[shape], (time.process_time() - started) / paths * 1e9)
    return best


def lookup_cpu_us(
    path: Path, sample: list[int], lookups: int = 20_000, repeat: int = 5, cold_lookups: int = 2_000
) -> dict[str, float]:
    """In-process CPU us per ``Model.lookup`` of random sampled users: the serving file read as the
    service reads it (a read() per page) and through a memory map (``PRAGMA mmap_size``, evaluated
    and not taken: docs/architecture.md), after one pass over the sample warmed each; back to back
    (caches hot), and each lookup after a read of 16 MB (caches cold, as between two answers under
    load: the network stack, wrk and the other worker run in between), timed one by one."""
    from server.store import open_model

    model = open_model(path)
    rng = random.Random(5)
    flush = bytearray(16 << 20)
    cases = [
        (access, size, cold) for cold in (False, True) for access, size in (("read()", 0), ("mmap", 1 << 40))
    ]
    best = {f"{access}{', cold' if cold else ''}": float("inf") for access, _, cold in cases}
    try:
        for _ in range(repeat):
            for access, size, cold in cases:
                model.connection.execute(f"PRAGMA mmap_size = {size}")
                case = f"{access}{', cold' if cold else ''}"
                if best[case] == float("inf"):
                    for user in sample:
                        model.lookup(user)
                if cold:
                    spent = 0
                    for user in rng.sample(sample, cold_lookups):
                        flush.find(b"\x01")  # reads every byte: evicts what the lookup left in the caches
                        started = time.process_time_ns()
                        model.lookup(user)
                        spent += time.process_time_ns() - started
                    best[case] = min(best[case], spent / cold_lookups / 1e3)
                    continue
                users = rng.choices(sample, k=lookups)
                started = time.process_time()
                for user in users:
                    model.lookup(user)
                best[case] = min(best[case], (time.process_time() - started) / lookups * 1e6)
    finally:
        model.close()
    return best


def record_cpu_us(
    kafka: Settings, path: Path, sample: list[int], seconds: float = 3.0, repeat: int = 3
) -> dict[str, float]:
    """In-process CPU us per served record, to set beside the ladder's record step under load:
    ``answer_record`` alone (this thread's CPU), and ``answer_record`` + ``ServedRecorder.send``
    to the private broker, 100 records every 10 ms as a worker under load sends them, counted as
    the whole process's CPU (librdkafka's threads included) until the broker has acknowledged all."""
    from server.answer import RequestIds
    from server.provenance import AnswerTime, ServedRecorder, answer_record
    from server.store import open_model

    ids, clock = RequestIds(), AnswerTime()
    model = open_model(path)
    line = model.lookup(sample[0]) or model.fallback
    model.close()
    users = random.Random(7).choices(sample, k=100_000)

    def record(user: int, now: float) -> bytes:
        time_text = clock.format(now)
        return answer_record(ids.next(), time_text, user, None, VERSION_A, line, False, 0.1, 200, "127.0.0.1")

    best = {"answer_record": float("inf"), "answer_record + send": float("inf")}
    for _ in range(repeat):
        started = time.thread_time()
        for user in users:
            record(user, time.time())
        best["answer_record"] = min(best["answer_record"], (time.thread_time() - started) / len(users) * 1e6)

        recorder = ServedRecorder(kafka)
        sent, started, until = 0, time.process_time(), time.monotonic() + seconds
        while time.monotonic() < until:
            for user in users[sent % len(users) : sent % len(users) + 100]:
                now = time.time()
                recorder.send(record(user, now), user, int(now * 1000))
                sent += 1
            recorder.poll()
            time.sleep(0.01)
        if recorder.close(30.0):
            raise RuntimeError("the private broker did not acknowledge every record in 30 s")
        spent = (time.process_time() - started) / sent * 1e6
        best["answer_record + send"] = min(best["answer_record + send"], spent)
    return best


def base_name(base: Result, limited: dict[str, Result]) -> str:
    return next(name for name, result in limited.items() if result is base)


if __name__ == "__main__":
    main()
