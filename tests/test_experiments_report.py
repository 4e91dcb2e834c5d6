"""``experiments.report``'s plots: an experiment shorter than an hour is one point, shown readably."""

from __future__ import annotations

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pandas as pd

from experiments.report import around_one_moment


def test_one_moment_gets_two_hours_around_it_and_a_longer_series_is_left_alone() -> None:
    _, axis = plt.subplots()
    one = pd.DataFrame({"time": ["2026-12-02T05:00:00"] * 2, "variant": ["a", "b"], "mean": [1.0, 2.0]})
    axis.plot(pd.to_datetime(one["time"]), one["mean"], marker="o")
    around_one_moment(axis, one)
    low, high = (mdates.num2date(x).replace(tzinfo=None) for x in axis.get_xlim())
    assert (low, high) == (pd.Timestamp("2026-12-02T04:00:00"), pd.Timestamp("2026-12-02T06:00:00"))

    _, other = plt.subplots()
    hours = pd.DataFrame({"time": ["2026-12-02T05:00:00", "2026-12-02T09:00:00"], "mean": [1.0, 2.0]})
    other.plot(pd.to_datetime(hours["time"]), hours["mean"])
    before = other.get_xlim()
    around_one_moment(other, hours)
    assert other.get_xlim() == before
    around_one_moment(other, pd.DataFrame())  # no answers yet: nothing to frame, no error
    plt.close("all")
