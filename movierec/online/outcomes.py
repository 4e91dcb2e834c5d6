"""What viewers did after each answer: pure functions of the lake's rows (pandas frames), no I/O.

The three steps of the online metrics (docs/online_metrics.md):

- **viewings**: a user's watch lines of one movie, cut where the gap between two lines is more than
  ``VIEWING_GAP``; a viewing starts at its first line (a resume counts as a start too) and its
  minutes are the distinct minutes streamed.
- **attribution**: a viewing that starts within ``window`` after an answer to the same user (the
  answer's time < start <= time + window) belongs to the latest such answer whose list holds the
  movie (a *list start*, at that position), otherwise to the latest such answer (a start of a movie
  the list did not offer); a viewing with no answer in the window before it is unattributed.
- **matching**: a site's reco line is the answer of the served record with the same user and the
  same list, nearest in time within ``tolerance`` (the site stamps the line after the answer
  arrived, by its own clock and time zone): that record says which model version and variant
  answered. A line with no such record (the site's own baseline, a lost record) stays unmatched.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from dateutil.tz import tzlocal

VIEWING_GAP = timedelta(minutes=30)  # a longer pause between two lines of a movie: a new viewing

ANSWER_COLUMNS = ["answer", "user_id", "time", "items"]  # items: list of movie ids, best first
WATCH_COLUMNS = ["user_id", "movie_id", "time", "minute"]
SERVED_COLUMNS = ["request_id", "time", "user_id", "items", "model_version", "variant", "fallback"]


def viewings(watch: pd.DataFrame, gap: timedelta = VIEWING_GAP) -> pd.DataFrame:
    """Watch lines -> one row per viewing: user_id, movie_id, start, minutes (distinct minutes).

    Vectorised (a day of the full site is millions of lines): movie ids as category codes, lines
    ordered by (user, movie, time), viewing boundaries where the user or movie changes or the gap
    is exceeded.
    """
    if watch.empty:
        return pd.DataFrame(
            {
                "user_id": pd.Series([], dtype="int64"),
                "movie_id": pd.Series([], dtype="object"),
                "start": pd.Series([], dtype="datetime64[us]"),
                "minutes": pd.Series([], dtype="int64"),
            }
        )
    movies = watch["movie_id"].astype("category")
    codes = movies.cat.codes.to_numpy().astype(np.int64)
    users = watch["user_id"].to_numpy().astype(np.int64)
    times = watch["time"].to_numpy()
    by_time = np.argsort(times, kind="stable")  # cheap: the lake's lines come nearly in time order
    shift = max(int(codes.max()).bit_length(), 1)
    order = by_time[np.argsort(((users << shift) + codes)[by_time], kind="stable")]  # 2x lexsort's speed
    users, codes, times = users[order], codes[order], times[order]
    minutes = watch["minute"].to_numpy().astype(np.int64)[order]
    same = (users[1:] == users[:-1]) & (codes[1:] == codes[:-1])
    close = np.diff(times) <= np.timedelta64(gap)
    begins = np.concatenate([[True], ~(same & close)])
    viewing = np.cumsum(begins) - 1
    first = np.flatnonzero(begins)
    pairs = np.sort(viewing * (1 << 32) + minutes)  # np.unique hashes, ~30x slower here
    distinct = pairs[np.concatenate([[True], np.diff(pairs) != 0])] >> 32  # each (viewing, minute) once
    return pd.DataFrame(
        {
            "user_id": users[first],
            "movie_id": movies.cat.categories.to_numpy()[codes[first]].astype(object),
            "start": times[first],
            "minutes": np.bincount(distinct, minlength=len(first)).astype("int64"),
        }
    )


def attribute(answers: pd.DataFrame, views: pd.DataFrame, window: timedelta) -> pd.DataFrame:
    """``views`` with the answer each belongs to (``answer``, NaN: none), ``listed`` and ``position``."""
    views = views.reset_index(drop=True).assign(view=lambda f: np.arange(len(f)))
    if answers.empty or views.empty:
        return views.assign(answer=np.nan, listed=False, position=np.nan).drop(columns="view")
    offered = answers[ANSWER_COLUMNS].explode("items").rename(columns={"items": "movie_id"})
    offered = offered.dropna(subset=["movie_id"])
    offered["position"] = offered.groupby("answer").cumcount() + 1
    pairs = views.merge(offered, on=["user_id", "movie_id"])
    pairs = pairs[(pairs["time"] < pairs["start"]) & (pairs["start"] <= pairs["time"] + window)]
    listed = pairs.sort_values(["view", "time"]).groupby("view").tail(1).set_index("view")

    rest = views[~views["view"].isin(listed.index)].sort_values("start")
    latest = pd.merge_asof(
        rest,
        answers[["answer", "user_id", "time"]].sort_values("time"),
        left_on="start",
        right_on="time",
        by="user_id",
        direction="backward",
        allow_exact_matches=False,  # the answer comes before the start
        tolerance=pd.Timedelta(window),
    ).set_index("view")

    out = views.set_index("view")
    out["answer"] = np.nan
    out["listed"] = False
    out["position"] = np.nan
    out.loc[latest.index, "answer"] = latest["answer"]
    out.loc[listed.index, "answer"] = listed["answer"]
    out.loc[listed.index, "listed"] = True
    out.loc[listed.index, "position"] = listed["position"]
    return out.reset_index(drop=True)


def outcomes_per_answer(answers: pd.DataFrame, attributed: pd.DataFrame) -> pd.DataFrame:
    """Per answer (indexed like ``answers``): starts, minutes, list_starts, list_minutes, and the first
    listed start's position, movie_id and start_time (null when nothing from the list started)."""
    own = attributed.dropna(subset=["answer"]).astype({"answer": "int64"})
    listed = own[own["listed"]]
    by_answer = own.groupby("answer")
    first = listed.sort_values("start").groupby("answer").head(1).set_index("answer")
    result = pd.DataFrame(index=answers["answer"].to_numpy())
    result["starts"] = by_answer.size().reindex(result.index, fill_value=0)
    result["minutes"] = by_answer["minutes"].sum().reindex(result.index, fill_value=0)
    result["list_starts"] = listed.groupby("answer").size().reindex(result.index, fill_value=0)
    result["list_minutes"] = listed.groupby("answer")["minutes"].sum().reindex(result.index, fill_value=0)
    result["position"] = first["position"].reindex(result.index)
    result["movie_id"] = first["movie_id"].reindex(result.index)
    result["start_time"] = first["start"].reindex(result.index)
    return result


def site_time_to_utc(times: pd.Series, timezone: str) -> pd.Series:
    """The site's naive local times as UTC (``timezone`` "": this machine's zone, DST-aware)."""
    zone = timezone or tzlocal()
    local = pd.to_datetime(times).dt.tz_localize(zone, ambiguous="NaT", nonexistent="shift_forward")
    return local.dt.tz_convert("UTC")


def list_key(items: object) -> str:
    """A list as one comparable string: the site logs ``a, b``, the service records ``a,b``."""
    if items is None or (isinstance(items, float) and np.isnan(items)):
        return ""
    if isinstance(items, str):
        return ",".join(part.strip() for part in items.split(",") if part.strip())
    return ",".join(str(item) for item in items)  # type: ignore[attr-defined]


def match_served(
    answers: pd.DataFrame, served: pd.DataFrame, tolerance: timedelta, timezone: str
) -> pd.DataFrame:
    """Per answer (indexed like ``answers``): request_id, model_version, variant, fallback of its
    served record (nulls where none matched)."""
    keys = ["request_id", "model_version", "variant", "fallback"]
    result = pd.DataFrame(index=answers["answer"].to_numpy(), columns=keys, dtype="object")
    if answers.empty or served.empty:
        return result
    left = pd.DataFrame(
        {
            "answer": answers["answer"].to_numpy(),
            "user_id": answers["user_id"].to_numpy(),
            "key": [list_key(items) for items in answers["items"]],
            "at": site_time_to_utc(answers["time"], timezone).to_numpy(),
        }
    ).dropna(subset=["at"])
    right = pd.DataFrame(
        {
            "user_id": served["user_id"].to_numpy(),
            "key": [list_key(items) for items in served["items"]],
            "at": pd.to_datetime(served["time"], utc=True).to_numpy(),
            **{key: served[key].to_numpy() for key in keys},
        }
    )
    left["at"] = left["at"].astype("datetime64[ns, UTC]")
    right["at"] = right["at"].astype("datetime64[ns, UTC]")
    right = right.dropna(subset=["user_id"]).astype({"user_id": "int64"})
    matched = pd.merge_asof(
        left.sort_values("at"),
        right.sort_values("at"),
        on="at",
        by=["user_id", "key"],
        direction="nearest",
        tolerance=pd.Timedelta(tolerance),
    ).set_index("answer")
    result.loc[matched.index, keys] = matched[keys].to_numpy()
    return result


def fallback_lines(served: pd.DataFrame, known: dict[str, str] | None = None) -> dict[str, str]:
    """Model version -> its fallback list (as ``list_key``): from serving files' meta (``known``),
    else the list the service answered unknown users with (records flagged ``fallback``)."""
    lines = {version: list_key(line) for version, line in (known or {}).items()}
    flagged = served[served["fallback"].astype(bool) & served["model_version"].notna()]
    for version, items in flagged.groupby("model_version")["items"]:
        lines.setdefault(str(version), list_key(items.mode().iloc[0]))
    return lines


def personalised(
    items: pd.Series,
    versions: pd.Series,
    fallbacks: dict[str, str],
    group_lines: dict[str, frozenset[str]] | None = None,
) -> pd.Series:
    """True where the list is the user's own: neither its version's fallback nor one of its
    demographic group lines (what users without history get); null where the fallback is not known."""
    groups = group_lines or {}
    values = []
    for line, version in zip(items, versions, strict=True):
        fallback = fallbacks.get(version) if isinstance(version, str) else None
        if fallback is None:
            values.append(None)
            continue
        key = list_key(line)
        values.append(key != fallback and key not in groups.get(version, frozenset()))
    return pd.Series(values, index=items.index, dtype="boolean")


def utc_to_site_time(moment: datetime, timezone: str) -> datetime:
    """A UTC moment as the site's naive local time (the inverse of ``site_time_to_utc``)."""
    zone = ZoneInfo(timezone) if timezone else tzlocal()
    return moment.astimezone(zone).replace(tzinfo=None)


def site_time_as_utc(moment: datetime, timezone: str) -> datetime:
    """A naive site time as a naive UTC time (one value; ``site_time_to_utc`` does columns)."""
    zone = ZoneInfo(timezone) if timezone else tzlocal()
    return moment.replace(tzinfo=zone).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
