"""What the side-by-side Spark benches share (``bench_spark_gc.py``, ``bench_spark_classes.py``,
``bench_als_blocks.py``): the command line, one copy of a home's lake per setting, rounds in
alternating order, the report.

Each bench compares settings of the retrain's jobs on copies of the lake ``make up`` left
(``MOVIEREC_HOME``), the order of the settings swapped from round to round so that a drift of the
shared machine does not favour one; the figures to read are the ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench_spark_cluster import home_copy  # bench/ is the script's folder: the same home copy

from movierec import settings as settings_module
from movierec.settings import Settings

T = TypeVar("T")


def parse_args(description: str, work: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=work)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.source = settings_module.load().home
    if not (args.source / "lake").exists():
        parser.error(f"{args.source} has no lake: point MOVIEREC_HOME at a home with one (make up makes one)")
    return args


def home_settings(args: argparse.Namespace, name: str, **env: str) -> Settings:
    """The settings of a fresh copy of the source home under ``--work``/``name``, with ``env`` over ours."""
    ours = {k: v for k, v in os.environ.items() if k.startswith("MOVIEREC_")}
    home = home_copy(args.source, args.work / name)
    return settings_module.load(ours | env | {"MOVIEREC_HOME": str(home)})


def alternating_rounds(rounds: int, names: list[str], run: Callable[[str], T]) -> list[dict[str, T]]:
    """``run(name)`` for every name, ``rounds`` times, the order reversed every other round."""
    return [
        {name: run(name) for name in (names if number % 2 == 0 else list(reversed(names)))}
        for number in range(rounds)
    ]


def report(result: dict[str, Any], json_path: Path | None) -> None:
    """The summary on stdout (without the per-round figures), everything into ``json_path``."""
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    if json_path:
        json_path.write_text(json.dumps(result, indent=2))
