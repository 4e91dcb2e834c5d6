"""The ``movierec`` console script: one entry point, one subcommand per job.

Each subcommand is a thin adapter from arguments to a function in an
importable module; heavy imports happen inside the handlers so that
``movierec parse`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from movierec import settings as settings_module


def cmd_config(args: argparse.Namespace) -> int:
    settings = settings_module.load()
    rows = settings_module.describe(settings)
    if args.json:
        print(json.dumps({row["env"]: row["value"] for row in rows}, indent=2))
        return 0
    width = max(len(row["env"]) for row in rows)
    for row in rows:
        print(f"{row['env']:<{width}}  {row['value']}  [{row['source']}]  # {row['doc']}")
    return 0


def parse_stream(source: BinaryIO, sink: TextIO) -> tuple[int, int]:
    """movielog lines in, one JSON object per line out; returns (events, malformed)."""
    from movierec.movielog import Malformed, parse_line, to_json_dict

    good = bad = 0
    for raw in source:
        parsed = parse_line(raw)
        if isinstance(parsed, Malformed):
            bad += 1
        else:
            good += 1
        sink.write(json.dumps(to_json_dict(parsed), ensure_ascii=False) + "\n")
    return good, bad


def cmd_parse(args: argparse.Namespace) -> int:
    good, bad = parse_stream(sys.stdin.buffer, sys.stdout)
    if args.summary:
        print(f"{good} events, {bad} malformed", file=sys.stderr)
    return 1 if args.strict and bad else 0


def cmd_kafka(args: argparse.Namespace) -> int:
    from movierec.ops.broker import broker

    settings = settings_module.load()
    if args.action == "start":
        broker.start(settings)
        broker.ensure_topics(settings)
        print(broker.status(settings).describe())
        return 0
    if args.action == "stop":
        stopped = broker.stop(settings)
        print("kafka stopped" if stopped else "kafka was not running")
        return 0
    if args.action == "topics":
        broker.ensure_topics(settings)
    state = broker.status(settings)
    print(state.describe())
    return 0 if state.healthy else 3


def cmd_airflow(args: argparse.Namespace) -> int:
    from movierec.ops import airflow_ops

    settings = settings_module.load()
    if args.action == "start":
        airflow_ops.start(settings)
    elif args.action == "stop":
        stopped = airflow_ops.stop(settings)
        print("airflow stopped" if stopped else "airflow was not running")
        return 0
    elif args.action == "unpause":
        print(f"unpaused: {', '.join(airflow_ops.unpause_all(settings))}")
        return 0
    state = airflow_ops.status(settings)
    print(state.describe())
    return 0 if state.healthy else 3


def cmd_spark(args: argparse.Namespace) -> int:
    from movierec.ops import spark_cluster, spark_submit

    settings = settings_module.load()
    if args.action == "classes":
        try:
            report = spark_submit.build_class_archive(settings)
        except spark_submit.SparkJobFailed as exc:
            print(f"movierec: {exc}", file=sys.stderr)
            return 1
        made = f"{report['archive_mb']} MB in {report['submit_seconds']} s"
        print(f"spark class archive: {report['archive']} ({made})")
        return 0
    if args.action == "stop":
        stopped = spark_cluster.stop(settings)
        print("spark cluster stopped" if stopped else "spark cluster was not running")
        return 0
    if args.action == "start":
        try:
            spark_cluster.start(settings)
        except spark_cluster.ClusterError as exc:
            print(f"movierec: {exc}", file=sys.stderr)
            return 1
    state = spark_cluster.status(settings)
    print(state.describe())
    if state.healthy and settings.spark_master != state.url:
        print(f"jobs run on {settings.spark_master}; to run them here:")
        print(f"  export MOVIEREC_SPARK_MASTER={state.url}")
    return 0 if state.healthy else 3


def cmd_up(args: argparse.Namespace) -> int:
    from movierec.ops import loop

    settings = settings_module.load()
    try:
        timeline = loop.up(
            settings, backfill_days=args.days, sessions_per_day=args.sessions_per_day, live=not args.no_live
        )
    except ValueError as exc:  # refused before anything started
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    print(f"\nmovierec is up after {timeline.so_far()}:")
    for line in loop.where(settings):
        print(f"  {line}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from movierec.ops import loop

    stopped = loop.down(settings_module.load())
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from movierec.ops import loop

    settings = settings_module.load()
    state = loop.status(settings)
    for name, ok in state.items():
        print(f"{name:14} {'up' if ok else 'DOWN'}")
    return 0 if all(state.values()) else 3


def cmd_ingest(args: argparse.Namespace) -> int:
    from movierec.ingest.consume import ingest_batch
    from movierec.ingest.watch_sessions import update_watch_sessions

    settings = settings_module.load()
    report = ingest_batch(settings)
    report["watch_sessions"] = update_watch_sessions(settings, report["batch_id"])
    print(json.dumps(report, default=str))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from movierec.ingest.replay import replay

    sent = replay(settings_module.load(), Path(args.file), topic=args.topic)
    print(f"{sent} lines replayed")
    return 0


def cmd_world(args: argparse.Namespace) -> int:
    # The simulator stands in for the site; only this command (never the product) imports it.
    from simulator import commands
    from simulator.scenarios import ScenarioError, describe_kinds

    if args.mode == "scenario":
        print(describe_kinds())
        return 0
    settings = settings_module.load()
    try:
        if args.mode == "build":
            commands.load_history(settings)
        elif args.mode == "backfill":
            commands.backfill(
                settings,
                args.days,
                sessions_per_day=args.sessions_per_day,
                follow=args.follow,
                scenarios=args.scenario,
                scenario_file=args.scenarios,
                ground_truth=args.ground_truth,
            )
        elif args.mode == "run":
            commands.run(
                settings,
                service_url=args.service,
                lines_per_second=args.lines_per_second,
                follow=args.follow,
                minute_seconds=args.minute_seconds,
                scenarios=args.scenario,
                scenario_file=args.scenarios,
                ground_truth=args.ground_truth,
            )
        elif args.mode == "api":
            commands.api(settings)
        elif args.mode == "truth-report":
            from simulator.truth_evaluation import render, truth_report

            print(render(truth_report(settings, args.version, args.users)), end="")
        elif args.mode == "calibration":
            table = commands.calibration(
                settings,
                args.days,
                sessions_per_day=args.sessions_per_day,
                follow=args.follow,
                end=args.end,
                from_lake=args.lake,
                plot=args.plot,
            )
            print(table, end="")
    except ScenarioError as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    settings = settings_module.load()
    if args.part == "web":
        from movierec.monitoring import web

        web.serve(settings)
    else:
        from movierec.monitoring import probe

        probe.run(settings, interval=args.every)
    return 0


def cmd_availability(args: argparse.Namespace) -> int:
    from movierec.monitoring import report

    print(report.render(report.table(settings_module.load(), args.window, args.last)), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from server.run import serve

    return serve(settings_module.load())


def cmd_explain(args: argparse.Namespace) -> int:
    from movierec.models.explain import ExplainError, explain, parse_time, render
    from movierec.movielog import parse_user_id

    user_id = parse_user_id(args.userid)
    if user_id is None:
        print(f"movierec: {args.userid!r} is not a user id (a positive integer)", file=sys.stderr)
        return 2
    try:
        found = explain(settings_module.load(), user_id, parse_time(args.at) if args.at else None)
    except ExplainError as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(found.as_dict(), indent=2) if args.json else render(found))
    return 0


def cmd_precompute(args: argparse.Namespace) -> int:
    from movierec import serving_file
    from movierec.models import versions
    from movierec.ops import spark_submit

    extra = ["--candidate", args.candidate] if args.candidate else []
    try:
        version = versions.check_version(args.version)
        tag = serving_file.serving_id(version, args.candidate)  # a log per serving file
        report = spark_submit.submit(
            settings_module.load(), "precompute", ["--version", version, *extra], tag=tag
        )
    except (versions.VersionError, spark_submit.SparkJobFailed) as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from movierec.models import registry

    return _print_outcome(lambda: registry.publish(settings_module.load(), args.version, force=args.force))


def cmd_rollback(args: argparse.Namespace) -> int:
    from movierec.models import registry

    return _print_outcome(lambda: registry.rollback(settings_module.load(), args.version))


def _print_outcome(act: Callable[[], Any]) -> int:
    """Run a registry action; print what it did, or why it was refused (exit 2)."""
    from movierec.models import registry

    try:
        outcome = act()
    except (registry.PublishRefused, ValueError, FileNotFoundError) as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    print(outcome.describe())
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from movierec.models import registry

    infos = registry.list_serving_files(settings_module.load())
    if not infos:
        print("no serving files yet")
    for info in infos:
        recall = "?" if info.recall_at_20 is None else f"{info.recall_at_20:.4f}"
        rows = "?" if info.row_count is None else f"{info.row_count:,}"
        flags = (("published", info.published), ("experiment", info.in_experiment))
        notes = ", ".join(note for note, on in flags if on)
        mark = "*" if info.current else " "
        size = f"{info.bytes / 1e6:8.1f} MB"
        line = f"{mark} {info.serving_id}  Recall@20 {recall:>6}  {rows:>11} users  {size}"
        print(f"{line}  {notes}".rstrip())
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from movierec.ops import rollout

    settings = settings_module.load()
    lb = rollout.LoadBalancer(args.socket or rollout.default_socket(settings))
    if args.image is None:
        print(rollout.render_status(rollout.status(lb)))
        return 0
    plan = rollout.Rollout(lb, args.image, progress=print)
    replaced = plan.run(canary=args.canary, weight=args.weight)
    print(rollout.render_status(rollout.status(lb)))
    print(f"rollout of {args.image}: {len(replaced)} replica(s) replaced")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from experiments import control, lifecycle
    from experiments.definition import DefinitionError, load

    settings = settings_module.load()
    try:
        if args.action == "start":
            if not args.definition:
                raise DefinitionError(
                    "start needs a definition (a TOML file, or a name in experiments/definitions/)"
                )
            overrides = dict(pair.split("=", 1) for pair in args.serving)
            definition = load(args.definition).with_serving(overrides)
            state = lifecycle.start_experiment(settings, definition)
            body = {"started": state.name, "serving": state.serving, "salt": state.salt,
                    "planned_users": state.planned_users, "planned_end": state.planned_end,
                    "power_analysis": state.power_analysis}  # fmt: skip
        elif args.action == "status":
            body = lifecycle.status(settings)
        elif args.action == "stop":
            body = lifecycle.stop_experiment(settings, args.definition)
        elif args.action == "report":
            name = args.definition or control.in_force(settings)
            if name is None:
                raise control.ExperimentStateError("no experiment in force: name the one to report")
            body = {"report": lifecycle.write_report(settings, name)}
        else:  # decide
            body = lifecycle.decide_experiment(settings)
    except (DefinitionError, control.ExperimentStateError, ValueError) as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(body, indent=2, default=str))
    return 0


def show(found: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    """A report as JSON or as its text."""
    print(json.dumps(found, indent=2, default=str) if as_json else render(found), end="\n" if as_json else "")


def cmd_shilling(args: argparse.Namespace) -> int:
    from movierec.security import shilling_check

    settings = settings_module.load()
    try:
        found = shilling_check.check_day(settings, args.day, args.until, store=not args.no_store)
    except shilling_check.ShillingError as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    show(found, args.json, shilling_check.render)
    return 1 if args.strict and found["targets"] else 0


def cmd_fairness(args: argparse.Namespace) -> int:
    from movierec.fairness import report

    settings = settings_module.load()
    try:
        found = report.write_report(settings, version=args.version, days=args.days, out=args.out)
    except report.FairnessError as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    show(found, args.json, report.render)
    breached = any(v for data in found["versions"].values() for v in data["breached"].values())
    return 1 if args.strict and breached else 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from movierec.feedback import report

    settings = settings_module.load()
    try:
        found = report.feedback_report(settings, days=args.days, until=args.until)
    except report.FeedbackError as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print(report.render(found), end="")
        print(f"written to {report.report_dir(settings)}")
    return 0


def cmd_online(args: argparse.Namespace) -> int:
    from movierec.ingest import served
    from movierec.online import compute

    settings = settings_module.load()
    reports = {}
    if not args.no_ingest:
        while True:  # every served record up to now, batch by batch
            report = served.ingest_served(settings)
            reports.setdefault("served", []).append(report)
            if report["batch_id"] is None:
                break
    reports["outcomes"] = compute.compute_answer_outcomes(settings)
    reports["metrics"] = compute.compute_online_metrics(settings)
    print(json.dumps(reports, indent=2, default=str))
    return 0


def cmd_scraping(args: argparse.Namespace) -> int:
    from movierec.security import scraping_scan

    settings = settings_module.load()
    overrides = {k: v for k, v in (("window_seconds", args.window), ("min_rate", args.min_rate)) if v}
    try:
        since, until = _utc(args.since), _utc(args.until)
        if since is None and args.hours:
            since = (until or datetime.now(UTC)) - timedelta(hours=args.hours)
        report = scraping_scan.scan(
            settings, since, until, scraping_scan.thresholds_for(settings, **overrides)
        )
    except ValueError as exc:
        print(f"movierec security scraping: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, default=str))
    return 0


def _utc(text: str | None) -> datetime | None:
    """An ISO 8601 time; without an offset it is UTC (the served table's zone)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movierec", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="print the effective settings")
    config.add_argument("--json", action="store_true", help="as a JSON object")
    config.set_defaults(handler=cmd_config)

    parse = commands.add_parser("parse", help="movielog lines on stdin -> JSON lines on stdout")
    parse.add_argument("--summary", action="store_true", help="print counts to stderr at the end")
    parse.add_argument("--strict", action="store_true", help="exit 1 if any line was malformed")
    parse.set_defaults(handler=cmd_parse)

    kafka = commands.add_parser("kafka", help="the embedded single-node Kafka broker (KRaft)")
    kafka.add_argument("action", choices=["start", "stop", "status", "topics"])
    kafka.set_defaults(handler=cmd_kafka)

    airflow = commands.add_parser("airflow", help="Airflow (api-server, scheduler, dag-processor, triggerer)")
    airflow.add_argument("action", choices=["start", "stop", "status", "unpause"])
    airflow.set_defaults(handler=cmd_airflow)

    spark = commands.add_parser(
        "spark",
        help="a local Spark standalone cluster (a master and MOVIEREC_SPARK_WORKERS workers): start, stop, "
        "status; classes: archive the Spark driver's classes for faster job starts (make install runs it)",
    )
    spark.add_argument("action", choices=["start", "stop", "status", "classes"])
    spark.set_defaults(handler=cmd_spark)

    up = commands.add_parser("up", help="start the whole loop (what `make up` runs); idempotent")
    up.add_argument("--days", type=float, default=3.0, help="days of history the first start backfills")
    up.add_argument("--sessions-per-day", type=int, default=96_000, help="of the backfilled history")
    up.add_argument("--no-live", action="store_true", help="do not start the live viewers")
    up.set_defaults(handler=cmd_up)
    commands.add_parser("down", help="stop everything `up` started").set_defaults(handler=cmd_down)
    commands.add_parser("status", help="what is running").set_defaults(handler=cmd_status)

    ingest = commands.add_parser("ingest", help="ingest the next batch of the topic into the lake, now")
    ingest.set_defaults(handler=cmd_ingest)

    replay = commands.add_parser(
        "replay", help="load an archived movielog file (plain or gzip) into the topic"
    )
    replay.add_argument("file")
    replay.add_argument("--topic", help="default: MOVIEREC_TOPIC")
    replay.set_defaults(handler=cmd_replay)

    world = commands.add_parser("world", help="the simulated streaming site")
    modes = world.add_subparsers(dest="mode", required=True)
    modes.add_parser("build", help="build (or load) the catalog, users and ground truth")
    backfill = modes.add_parser("backfill", help="write days of history to the topic, as fast as it goes")
    backfill.add_argument("--days", type=float, required=True)
    backfill.add_argument("--sessions-per-day", type=int, default=96_000)
    run = modes.add_parser("run", help="live viewers calling the recommendation service")
    run.add_argument("--service", help="service base URL (default: the configured server)")
    run.add_argument("--lines-per-second", type=float, default=50.0)
    run.add_argument("--minute-seconds", type=float, default=60.0, help="real seconds per watched minute")
    for mode in (backfill, run):
        mode.add_argument("--follow", type=float, default=0.5, help="how much viewers follow lists (0..1)")
        mode.add_argument(
            "--scenario",
            action="append",
            default=[],
            metavar="SPEC",
            help="kind[:start=...,end=...,strength=...,option=...] (repeatable; see `world scenario list`)",
        )
        mode.add_argument("--scenarios", type=Path, metavar="FILE", help="scenarios from a JSON or TOML file")
        mode.add_argument(
            "--ground-truth",
            type=Path,
            metavar="PATH",
            help="where scenarios log what they did (default: $MOVIEREC_HOME/world/ground_truth.jsonl)",
        )
    modes.add_parser("api", help="the catalog API (users, movies)")
    truth = modes.add_parser(
        "truth-report", help="evaluation only: a model version's lists against the ground truth"
    )
    truth.add_argument("--version", required=True, help="model version id (UTC YYYYMMDDTHHMMSSZ)")
    truth.add_argument("--users", type=int, default=5_000, help="users of the model to sample")
    calibration = modes.add_parser(
        "calibration", help="the history's concentration and a reference CF against real movie data"
    )
    calibration.add_argument("--days", type=float, default=3.0, help="days of backfilled history")
    calibration.add_argument("--sessions-per-day", type=int, default=96_000)
    calibration.add_argument("--follow", type=float, default=0.5, help="as for backfill")
    calibration.add_argument(
        "--end", type=datetime.fromisoformat, help="end of the history (default: now), as for backfill"
    )
    calibration.add_argument("--lake", action="store_true", help="measure the lake's watch sessions instead")
    calibration.add_argument(
        "--plot", type=Path, metavar="PNG", help="also draw the popularity and Lorenz curves"
    )
    scenario = modes.add_parser("scenario", help="the scenarios a backfill or run can play")
    scenario.add_argument("action", choices=["list"], help="list: the kinds, their strength and options")
    world.set_defaults(handler=cmd_world)

    precompute = commands.add_parser(
        "precompute", help="the top-20 list of every user of a version into a serving file (Spark)"
    )
    precompute.add_argument("version", help="model version id (UTC YYYYMMDDTHHMMSSZ)")
    precompute.add_argument(
        "--candidate",
        help="serve this candidate of the version instead of the chosen one: serving id VERSION-CANDIDATE",
    )
    precompute.set_defaults(handler=cmd_precompute)
    publish = commands.add_parser(
        "publish", help="validate a serving file, apply the Recall@20 gate, make it current"
    )
    publish.add_argument("version", help="model version id (UTC YYYYMMDDTHHMMSSZ)")
    publish.add_argument("--force", action="store_true", help="publish even if the gate refuses it")
    publish.set_defaults(handler=cmd_publish)
    rollback = commands.add_parser("rollback", help="make the previous (or given) published version current")
    rollback.add_argument("version", nargs="?", help="default: the newest published one before current")
    rollback.set_defaults(handler=cmd_rollback)
    models = commands.add_parser("models", help="list the serving files (* marks current)")
    models.set_defaults(handler=cmd_models)

    monitor = commands.add_parser("monitor", help="the monitoring parts `make up` runs (supervised)")
    monitor.add_argument(
        "part", choices=["web", "probe"], help="web: dashboard + alert receiver; probe: metrics"
    )
    monitor.add_argument("--every", type=float, help="probe: seconds between rounds (default: Prometheus's)")
    monitor.set_defaults(handler=cmd_monitor)
    availability = commands.add_parser(
        "availability", help="the site's availability from the lake (status 200 under 800 ms), per window"
    )
    availability.add_argument("--window", choices=["5m", "1h", "1d", "72h", "96h"], default="1h")
    availability.add_argument("--last", type=int, default=24, help="rows per server (newest)")
    availability.set_defaults(handler=cmd_availability)
    experiment = commands.add_parser(
        "experiment", help="A/B experiments through the service's hook: start, status, stop, report, decide"
    )
    experiment.add_argument("action", choices=["start", "status", "stop", "report", "decide"])
    experiment.add_argument(
        "definition",
        nargs="?",
        help="start: a TOML file or a name in experiments/definitions/; stop, report: a name",
    )
    experiment.add_argument(
        "--serving", action="append", default=[], metavar="VARIANT=ID", help="start: a variant's serving id"
    )
    experiment.set_defaults(handler=cmd_experiment)
    online = commands.add_parser(
        "online",
        help="online metrics now (what the online_metrics DAG runs): served records, outcomes, metrics",
    )
    online.add_argument("--no-ingest", action="store_true", help="do not ingest the served topic first")
    online.set_defaults(handler=cmd_online)

    security = commands.add_parser("security", help="detectors of attacks over our own telemetry")
    checks = security.add_subparsers(dest="check", required=True)
    shilling = checks.add_parser(
        "shilling",
        help="rating spam: the accounts pushing one movie and the target in a day of the lake; "
        "stores the flags training leaves out",
    )
    shilling.add_argument(
        "--day", type=date.fromisoformat, help="YYYY-MM-DD (default: the newest day with ratings)"
    )
    shilling.add_argument(
        "--until", type=datetime.fromisoformat, metavar="TIME", help="only the day's data before TIME (local)"
    )
    shilling.add_argument(
        "--no-store", action="store_true", help="only the report: no flags, no gauges (e.g. another's lake)"
    )
    shilling.add_argument("--json", action="store_true", help="as one JSON object")
    shilling.add_argument("--strict", action="store_true", help="exit 1 if a ring was found")
    shilling.set_defaults(handler=cmd_shilling)

    feedback = commands.add_parser("feedback", help="feedback loops in our own telemetry")
    feedback_reports = feedback.add_subparsers(dest="report", required=True)
    loops = feedback_reports.add_parser(
        "report",
        help="per day: concentration of exposure and watches (Gini, top-20 share), starts from our "
        "lists, genre diversity per user; JSON, plot and gauges",
    )
    loops.add_argument("--days", type=int, default=14, help="the newest this many days of the lake")
    loops.add_argument("--until", type=date.fromisoformat, help="YYYY-MM-DD: the last day (default: newest)")
    loops.add_argument("--json", action="store_true", help="as one JSON object")
    loops.set_defaults(handler=cmd_feedback)

    scraping = checks.add_parser(
        "scraping",
        help="scraping of /recommend: answers the site never logged, fast, on consecutive ids, per client",
    )
    scraping.add_argument("--since", help="start, ISO 8601 (no offset: UTC); default: --hours before --until")
    scraping.add_argument("--until", help="end, ISO 8601 (no offset: UTC); default: now")
    scraping.add_argument("--hours", type=float, default=24.0, help="the range when --since is not given")
    scraping.add_argument("--window", type=float, help="seconds per window (default 60)")
    scraping.add_argument(
        "--min-rate", type=float, help="unlogged answers/s that flag a window (default 0.25)"
    )
    scraping.set_defaults(handler=cmd_scraping)

    fairness = commands.add_parser("fairness", help="fairness requirements measured on our own telemetry")
    fairness_reports = fairness.add_subparsers(dest="report", required=True)
    fairness_report = fairness_reports.add_parser(
        "report",
        help="per model version: online quality by gender, age band, occupation; exposure of the long "
        "tail, older films, languages; JSON + PNG + gauges",
    )
    fairness_report.add_argument("--version", help="only this model version (serving id)")
    fairness_report.add_argument("--days", type=int, default=7, help="days up to the newest served day")
    fairness_report.add_argument(
        "--out", type=Path, help="folder for fairness.json and fairness.png (default: reports/fairness)"
    )
    fairness_report.add_argument("--json", action="store_true", help="print the report as JSON")
    fairness_report.add_argument("--strict", action="store_true", help="exit 1 if a requirement is breached")
    fairness_report.set_defaults(handler=cmd_fairness)

    serve = commands.add_parser("serve", help="the recommendation service (MOVIEREC_SERVER_WORKERS workers)")
    serve.set_defaults(handler=cmd_serve)
    explain = commands.add_parser(
        "explain", help="the answer served to a user: its model version, commit, parameters and data"
    )
    explain.add_argument("userid")
    explain.add_argument("--at", metavar="TIME", help="latest answer at or before TIME (ISO 8601; local)")
    explain.add_argument("--json", action="store_true", help="as one JSON object")
    explain.set_defaults(handler=cmd_explain)

    rollout = commands.add_parser(
        "rollout",
        help="a new service image across the replicas behind HAProxy, one at a time, no request lost",
    )
    rollout.add_argument("image", nargs="?", help="the new image (none: show the replicas and their images)")
    rollout.add_argument("--canary", type=int, metavar="N", help="replace only the first N replicas")
    rollout.add_argument(
        "--weight", type=int, metavar="W", help="with --canary: their HAProxy weight (others keep 100)"
    )
    rollout.add_argument(
        "--socket", type=Path, help="HAProxy's admin socket (default $MOVIEREC_HOME/lb/haproxy.sock)"
    )
    rollout.set_defaults(handler=cmd_rollout)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python is chatty at INFO
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    # SIGTERM (a service manager, `kill`) stops a command the same clean way as Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.handler(args)
    except (settings_module.SettingsError, RuntimeError) as exc:
        print(f"movierec: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("movierec: interrupted", file=sys.stderr)
        return 130


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    sys.exit(main())
