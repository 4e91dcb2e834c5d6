"""The benches' common command line: a parser described by the bench's docstring, with the size of
the simulated world (``--users``, ``--movies``), the settings variables for that size, the options
of the benches that retrain a small world, and their log lines."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def scale_parser(doc: str, users: int = 1_000_000, movies: int = 27_000) -> argparse.ArgumentParser:
    """The bench's parser (its description: the docstring's first line) with ``--users`` and
    ``--movies``, by default the full scale."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--users", type=int, default=users, help="users of the simulated world")
    parser.add_argument("--movies", type=int, default=movies, help="movies of the simulated world")
    return parser


def scale_env(args: argparse.Namespace) -> dict[str, str]:
    """The MOVIEREC_SCALE_* variables for the world ``args`` asks for."""
    return {"MOVIEREC_SCALE_USERS": str(args.users), "MOVIEREC_SCALE_MOVIES": str(args.movies)}


def retrain_options(parser: argparse.ArgumentParser) -> None:
    """``--iterations``, ``--driver-memory``, ``--json``, ``--plot``: the benches that retrain."""
    parser.add_argument("--iterations", type=int, default=10, help="ALS iterations")
    parser.add_argument("--driver-memory", default="2g", help="Spark driver memory")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--plot", type=Path, help="draw the bench's figure here (PNG)")


def start_logging(quiet_level: int = logging.WARNING) -> None:
    """INFO lines with time and logger; Great Expectations, py4j and our GX wrapper from ``quiet_level``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "py4j", "movierec.ingest.quality"):
        logging.getLogger(noisy).setLevel(quiet_level)
