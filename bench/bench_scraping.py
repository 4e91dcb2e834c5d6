"""The scraping detector against the simulator's scrapers: detected or not, time to detection, false alarms.

Two runs of the same length on the real path (simulator/scraping_check.py): one with three
scrapers at once, each from its own address (weak 0.5, medium 2, strong 20 requests/s asked), and
a clean one with none; ``movierec serve`` with its default per-client rate limit (1 request/s,
burst 20: ``--limit-rate 0`` switches it off), the simulated site's viewers calling it from
127.0.0.1, the movielog and served records ingested, then the detector over each run. Prints the
table of docs/security-serving.md.

    flock /tmp/movierec-heavy.lock .venv/bin/python bench/bench_scraping.py [--seconds 180] \\
        [--users 100000] [--movies 5000] [--ports 29110] [--limit-rate 1]

State goes to a fresh temporary MOVIEREC_HOME unless ``--home``; five ports from ``--ports``; the
detector's windows of each run are drawn to ``scraping-planted.png`` and ``scraping-clean.png``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from world_scale import scale_env, scale_parser  # bench/ is the script's folder

from movierec.ops.broker import broker
from movierec.security import scraping
from simulator import scraping_check
from simulator.scraping_check import Arm

# the ports after --ports (the broker's), in this order
PORT_SETTINGS = (
    "MOVIEREC_KAFKA_CONTROLLER_PORT",
    "MOVIEREC_SERVER_PORT",
    "MOVIEREC_SERVER_OPS_PORT",
    "MOVIEREC_API_PORT",
)
ARMS = [
    Arm("weak", 0.5, "127.0.0.2", 10_000),
    Arm("medium", 2.0, "127.0.0.3", 20_000),
    Arm("strong", 20.0, "127.0.0.4", 30_000),
]


def main() -> None:
    parser = scale_parser(__doc__, users=100_000, movies=5_000)
    parser.add_argument("--seconds", type=float, default=180.0, help="how long the scrapers run")
    parser.add_argument("--lead", type=float, default=30.0, help="seconds of site traffic before they start")
    parser.add_argument("--tail", type=float, default=30.0, help="seconds of site traffic after they stop")
    parser.add_argument("--ports", type=int, default=29_110, help="first of five free ports")
    parser.add_argument("--limit-rate", default="1", help="MOVIEREC_SERVER_CLIENT_RATE (0: no limit)")
    parser.add_argument("--home", help="MOVIEREC_HOME to use (default: a new temporary folder)")
    parser.add_argument("--plots", help="folder for the two runs' plots (default: the home)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    home = args.home or tempfile.mkdtemp(prefix="movierec-scraping-")
    ports = {name: str(args.ports + 1 + n) for n, name in enumerate(PORT_SETTINGS)}
    settings = broker.private_settings(
        Path(home),
        MOVIEREC_KAFKA_BOOTSTRAP=f"127.0.0.1:{args.ports}",
        MOVIEREC_KAFKA_HEAP="512m",
        **scale_env(args),
        MOVIEREC_SERVER_WORKERS="2",
        MOVIEREC_SERVER_CLIENT_RATE=args.limit_rate,
        **ports,
    )
    thresholds = scraping.Thresholds(tolerance_seconds=settings.online_match_seconds)
    began = time.monotonic()
    timing = {"lead": args.lead, "length": args.seconds, "tail": args.tail, "thresholds": thresholds}
    broker.start(settings)
    try:
        plots = Path(args.plots or home)
        plots.mkdir(parents=True, exist_ok=True)
        planted = scraping_check.run(
            settings, ARMS, **timing, plot=plots / "scraping-planted.png", minute_seconds=1.0
        )
        clean = scraping_check.run(
            settings, [], **timing, plot=plots / "scraping-clean.png", minute_seconds=1.0
        )
    finally:
        broker.stop(settings)
    print(json.dumps({"planted": asdict(planted), "clean": asdict(clean)}, default=str))
    print()
    limit = "off" if float(args.limit_rate) == 0 else f"{args.limit_rate}/s per client"
    print(f"{args.users:,} users, scrapers for {args.seconds:.0f} s, rate limit {limit}, home {home}")
    print(scraping_check.render(planted, clean, thresholds))
    print(f"{time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
