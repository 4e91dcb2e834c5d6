"""From the lake's per-answer outcomes to one row per user: the unit an experiment is analysed in. Pure.

A user belongs to the variant the service labelled their answers with (the served records, matched
to the site's reco lines by movierec.online). A user whose answers carry more than one variant
(the split changed under them) is a *crossover*: counted, and left out of the analysis.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

OUTCOME_COLUMNS = ["time", "user_id", "variant", "list_starts", "list_minutes", "minutes"]


def per_user(answers: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(one row per user: variant, answers, followed, the metrics of analysis.METRICS; crossovers).

    ``answers``: answer_outcome rows of the experiment, with a variant.
    """
    labelled = answers.dropna(subset=["variant"])
    variants = labelled.groupby("user_id")["variant"].nunique()
    crossovers = variants.index[variants > 1]
    kept = labelled[~labelled["user_id"].isin(crossovers)]
    grouped = kept.assign(followed=(kept["list_starts"] > 0).astype(int)).groupby("user_id")
    users = pd.DataFrame(
        {
            "variant": grouped["variant"].first(),
            "answers": grouped.size(),
            "followed": grouped["followed"].sum(),
            "list_minutes": grouped["list_minutes"].sum(),
            "minutes": grouped["minutes"].sum(),
        }
    )
    users["follow_rate"] = users["followed"] / users["answers"]
    users["followed_any"] = (users["followed"] > 0).astype(int)
    users["list_minutes_per_answer"] = users["list_minutes"] / users["answers"]
    users["minutes_per_answer"] = users["minutes"] / users["answers"]
    return users.reset_index(), len(crossovers)


def assignment_mismatches(users: pd.DataFrame, assign: Callable[[int], str]) -> int:
    """Users whose label differs from the variant the experiment's salt assigns them (should be 0)."""
    expected = users["user_id"].map(assign)
    return int((expected != users["variant"]).sum())


def cumulative_points(start: pd.Timestamp, end: pd.Timestamp, points: int = 24) -> list[pd.Timestamp]:
    """Evenly spaced cut-off times after ``start`` up to ``end``: whole days when the span allows,
    hours for a short experiment (for the plots of the metric over time)."""
    span = end - start
    step = pd.Timedelta(days=1) if span >= pd.Timedelta(days=points / 8) else pd.Timedelta(hours=1)
    if span / step > points:
        step = span / points
    cuts, moment = [], start + step
    while moment < end:
        cuts.append(moment)
        moment += step
    return [*cuts, end]
