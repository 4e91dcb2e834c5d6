"""The benches' common command line: a parser described by the bench's docstring, with the size of
the simulated world (``--users``, ``--movies``), and the settings variables for that size."""

from __future__ import annotations

import argparse


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
