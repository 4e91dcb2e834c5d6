"""Our own Great Expectations expectation types (imported for GX's registry before any suite loads).

``expect_column_values_to_match_regex_once_per_value`` is GX's
``expect_column_values_to_match_regex`` (same arguments, same results, the same renderers) with
the pandas check run once per distinct value instead of once per row: GX's pandas engine calls
``re.search`` per row, a quarter of a watch batch's validation, while a batch's ~1M movie ids take
~27K distinct values. Each row's verdict is its value's, so the rows GX reports are the same.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.core.expect_column_values_to_match_regex import (
    ExpectColumnValuesToMatchRegex,
)
from great_expectations.expectations.metrics.column_map_metrics.column_values_match_regex import (
    ColumnValuesMatchRegex,
)
from great_expectations.expectations.metrics.map_metric_provider import column_condition_partial

MATCH_ONCE_PER_VALUE = "column_values.match_regex_once_per_value"


def matches_once_per_value(column: pd.Series, regex: str) -> pd.Series:
    """``column.astype(str).str.contains(regex)`` (GX's own check), evaluated per distinct value."""
    codes, distinct = pd.factorize(column)  # nulls get code -1
    verdicts = pd.Series(distinct).astype(str).str.contains(regex).to_numpy(dtype=bool)
    result = np.zeros(len(column), dtype=bool)
    valued = codes >= 0
    result[valued] = verdicts[codes[valued]]
    if not valued.all():  # GX filters nulls out first; kept exact for a caller that does not
        result[~valued] = column[~valued].astype(str).str.contains(regex).to_numpy(dtype=bool)
    return pd.Series(result, index=column.index)


class ColumnValuesMatchRegexOncePerValue(ColumnValuesMatchRegex):
    """GX's regex metric (its SQL and Spark forms inherited), the pandas form per distinct value."""

    condition_metric_name = MATCH_ONCE_PER_VALUE

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, regex: str, **kwargs: Any) -> pd.Series:
        return matches_once_per_value(column, regex)


class ExpectColumnValuesToMatchRegexOncePerValue(ExpectColumnValuesToMatchRegex):
    """Expect the column entries to be strings that match a given regular expression.

    GX's ``expect_column_values_to_match_regex``, checked once per distinct value.
    """

    map_metric: ClassVar[str] = MATCH_ONCE_PER_VALUE
