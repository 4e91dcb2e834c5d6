"""How much the served lists differ by user: random users of the site asked through the real service.

    .venv/bin/python bench/sample_lists.py [--users 1000] [--seed 7] [--population 1000000]
        [--service http://127.0.0.1:8082] [--json FILE]

Asks ``GET /recommend/<id>`` for ``--users`` ids drawn uniformly from 1..population (the site's
users, most of whom have no history yet) and prints: answers by status, fallback answers
(``X-Fallback: 1``: a user the serving file does not list), distinct lists, the share of users
who got the most common list, and the same among the users the file lists. Used for issue 17's
"a fresh clone's make up reaches lists that differ by user" (README, "make up").
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter

import httpx


def sample(service: str, user_ids: list[int]) -> list[dict[str, object]]:
    answers = []
    with httpx.Client(base_url=service, timeout=5.0) as client:
        for user_id in user_ids:
            response = client.get(f"/recommend/{user_id}")
            answers.append(
                {
                    "user_id": user_id,
                    "status": response.status_code,
                    "fallback": response.headers.get("X-Fallback") == "1",
                    "version": response.headers.get("X-Model-Version"),
                    "variant": response.headers.get("X-Variant"),
                    "list": response.text.strip(),
                }
            )
    return answers


def summary(answers: list[dict[str, object]]) -> dict[str, object]:
    ok = [a for a in answers if a["status"] == 200]
    listed = [a for a in ok if not a["fallback"]]

    def spread(group: list[dict[str, object]]) -> dict[str, object]:
        lists = Counter(str(a["list"]) for a in group)
        top = lists.most_common(1)[0][1] if lists else 0
        return {
            "users": len(group),
            "distinct_lists": len(lists),
            "most_common_share": round(top / len(group), 4) if group else None,
        }

    return {
        "asked": len(answers),
        "status": dict(Counter(int(a["status"]) for a in answers)),
        "versions": dict(Counter(str(a["version"]) for a in ok)),
        "variants": dict(Counter(str(a["variant"]) for a in ok)),
        "fallback": sum(bool(a["fallback"]) for a in ok),
        "all_answers": spread(ok),
        "users_in_the_file": spread(listed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--population", type=int, default=1_000_000)
    parser.add_argument("--service", default="http://127.0.0.1:8082")
    parser.add_argument("--json", default=None, help="also write the summary here")
    args = parser.parse_args()
    user_ids = random.Random(args.seed).sample(range(1, args.population + 1), args.users)
    result = summary(sample(args.service, user_ids))
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
