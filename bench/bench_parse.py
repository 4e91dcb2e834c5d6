"""Throughput of the movielog grammar (``parse_line``) against a bare ``split``.

Side by side in one run, over the same lines: the full grammar, and the least any
parser must do, ``line.split(",", 2)``. The ratio says what the grammar's checks
cost; absolute numbers depend on the machine. Run on demand:

    .venv/bin/python bench/bench_parse.py [--lines 1000000] [--repeat 3]

The lines are a realistic mix made with ``format_event``: about 90% watch minutes,
5% recommendation results with 20 ids (some of them timeouts), 4% ratings and
1% malformed lines of the kinds real logs contain.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from movierec.movielog import Malformed, RateEvent, RecoEvent, WatchEvent, format_event, parse_line

Line = TypeVar("Line", str, bytes)

KINDS = ("watch", "reco", "rate", "malformed")
WEIGHTS = (90, 5, 4, 1)
TIMEOUT = (
    "java.util.concurrent.TimeoutException: Request timeout to "
    "17645-team19.isri.cmu.edu/128.2.204.215:8082 after 800 ms"
)
MALFORMED_TEMPLATES = (
    "{t},{u},GET /rate/{m}=6",
    "{t},{u},GET /rate/{m}",
    "{t},{u},GET /data/m/{m}/-1.mpg",
    "{t},,GET /data/m/{m}/3.mpg",
    "{t} ,{u},GET /data/m/{m}/3.mpg",
    "{t},{u}",
    "{t},{u},POST /rate/{m}=4",
    "{t},{u},recommendation request 17645-team19.isri.cmu.edu:8082, result: {m}, 12 ms",
)


def movie_ids(count: int, rng: random.Random) -> list[str]:
    words = ["the", "a", "of", "love", "night", "star", "wars", "king", "man", "city", "dr.", "part+ii", "&"]
    return [
        "+".join(rng.choices(words, k=rng.randint(1, 5))) + f"+{n}+{rng.randint(1920, 2025)}"
        for n in range(count)
    ]


def make_lines(count: int, seed: int = 1) -> dict[str, list[str]]:
    """``count`` lines in the realistic mix, grouped by kind (order within a kind kept)."""
    rng = random.Random(seed)
    movies = movie_ids(27_000, rng)
    start = datetime(2026, 11, 28, 10, 0, 0)
    lines: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for n, kind in enumerate(rng.choices(KINDS, WEIGHTS, k=count)):
        # Mostly whole seconds, some with milliseconds, as the site writes them.
        moment = start + timedelta(seconds=n // 50, milliseconds=rng.randrange(1000) if n % 3 == 0 else 0)
        user = rng.randint(1, 1_000_000)
        movie = rng.choice(movies)
        server = f"{rng.randint(10000, 99999)}-team{rng.randint(1, 30)}.isri.cmu.edu:8082"
        if kind == "watch":
            line = format_event(WatchEvent(moment, user, movie, rng.randrange(180)))
        elif kind == "rate":
            line = format_event(RateEvent(moment, user, movie, rng.randint(1, 5)))
        elif kind == "reco":
            if rng.random() < 0.9:
                event = RecoEvent(moment, user, server, 200, tuple(rng.sample(movies, 20)), None, 180)
            else:
                event = RecoEvent(moment, user, server, 0, (), TIMEOUT, 800)
            line = format_event(event)
        else:
            template = rng.choice(MALFORMED_TEMPLATES)
            line = template.format(t=moment.isoformat(), u=user, m=movie)
        lines[kind].append(line)
    return lines


def best_rate(run: Callable[[Sequence[Line]], object], lines: Sequence[Line], repeat: int) -> float:
    """Lines per second of the fastest of ``repeat`` passes over ``lines``."""
    if not lines:
        return float("nan")
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        run(lines)
        best = min(best, time.perf_counter() - began)
    return len(lines) / best


def with_grammar(lines: Sequence[str | bytes]) -> int:
    bad = 0
    for line in lines:
        if isinstance(parse_line(line), Malformed):
            bad += 1
    return bad


def with_split(lines: Sequence[str]) -> int:
    fields = 0
    for line in lines:
        fields += len(line.split(",", 2))
    return fields


def with_bytes_split(lines: Sequence[bytes]) -> int:
    """The baseline for bytes from Kafka: decode, then split."""
    fields = 0
    for line in lines:
        fields += len(line.decode("utf-8").split(",", 2))
    return fields


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines in the mix (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per measurement; the best counts")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    began = time.perf_counter()
    by_kind = make_lines(args.lines, args.seed)
    mixed = [line for kind in KINDS for line in by_kind[kind]]
    random.Random(args.seed).shuffle(mixed)
    # Fresh copies in stream order, laid out in memory as a consumer would receive them.
    mixed = [line.encode("utf-8").decode("utf-8") for line in mixed]
    encoded = [line.encode("utf-8") for line in mixed]
    print(f"generated {len(mixed):,} lines in {time.perf_counter() - began:.1f} s")

    malformed = with_grammar(mixed)
    print(f"grammar rejects {malformed:,} lines ({malformed / max(len(mixed), 1):.2%})")
    print(f"best of {args.repeat} passes each; 'grammar is' = split lines/s / grammar lines/s\n")

    Runner = Callable[[Sequence[Any]], int]
    rows: list[tuple[str, Sequence[Any], Runner, Runner]] = [("all (str)", mixed, with_grammar, with_split)]
    rows += [(kind, by_kind[kind], with_grammar, with_split) for kind in KINDS]
    rows.append(("all (bytes)", encoded, with_grammar, with_bytes_split))

    header = f"{'lines':<12}{'count':>11}{'grammar lines/s':>18}{'split lines/s':>16}{'grammar is':>14}"
    print(header)
    print("-" * len(header))
    for name, lines, grammar, baseline in rows:
        grammar_rate = best_rate(grammar, lines, args.repeat)
        split_rate = best_rate(baseline, lines, args.repeat)
        ratio = split_rate / grammar_rate
        print(
            f"{name:<12}{len(lines):>11,}{grammar_rate:>18,.0f}{split_rate:>16,.0f}"
            f"{f'{ratio:.1f}x slower':>14}"
        )


if __name__ == "__main__":
    main()
