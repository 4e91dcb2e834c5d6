"""Does the online metric rank lists as the truth does? Lists of known quality on the real path.

Three serving files (a random 20, the popularity top-20, each user's true top-20) served side by
side to comparable user groups by one experiment (three variants split by the salt) through
``movierec serve`` on a private broker; live simulated viewers call it; ingest, the served records,
the online metrics and the experiment's analysis follow (simulator/online_check.py). Prints the
table: the truth's list fit of each variant's lists beside the online metrics, and the gaps.

    .venv/bin/python bench/bench_online_truth.py [--users 100000] [--sessions 9000] \
        [--minute-seconds 0.01] [--lines-per-second 1000] [--ports 19510]

The online window is scaled to the simulated minutes (30 simulated minutes at ``--minute-seconds``,
at least 6 s of wall time). State goes to a fresh temporary MOVIEREC_HOME unless ``--home``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict

from world_scale import scale_env, scale_parser  # bench/ is the script's folder

from movierec import settings as settings_module
from simulator import online_check


def main() -> None:
    parser = scale_parser(__doc__, users=100_000)
    parser.add_argument("--sessions", type=int, default=9_000, help="answers to collect")
    parser.add_argument("--minute-seconds", type=float, default=0.01)
    parser.add_argument("--lines-per-second", type=float, default=1_000.0)
    parser.add_argument("--ports", type=int, default=19_510, help="first of four free ports")
    parser.add_argument("--home", help="MOVIEREC_HOME to use (default: a new temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    home = args.home or tempfile.mkdtemp(prefix="movierec-online-truth-")
    window = max(30 * args.minute_seconds / 60, 0.1)  # minutes of wall time
    settings = settings_module.load(
        {
            "MOVIEREC_HOME": home,
            **scale_env(args),
            "MOVIEREC_KAFKA_BOOTSTRAP": f"127.0.0.1:{args.ports}",
            "MOVIEREC_KAFKA_CONTROLLER_PORT": str(args.ports + 1),
            "MOVIEREC_SERVER_PORT": str(args.ports + 2),
            "MOVIEREC_API_PORT": str(args.ports + 3),
            "MOVIEREC_SERVER_WORKERS": "2",
            "MOVIEREC_ONLINE_WINDOW_MINUTES": str(window),
        }
    )
    began = time.monotonic()
    check = online_check.run_check(
        settings,
        sessions=args.sessions,
        minute_seconds=args.minute_seconds,
        lines_per_second=args.lines_per_second,
    )
    print(json.dumps(asdict(check), default=str))
    print()
    print(f"{args.users:,} users x {args.movies:,} movies, {args.sessions:,} answers, home {home}")
    print(online_check.render(check))
    print(f"report: {check.report}; {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
