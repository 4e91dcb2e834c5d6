"""Data quality with the real Great Expectations: suites from expectations/, checkpoints, data docs."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from movierec import settings as settings_module
from movierec.ingest import consume, quality
from movierec.ingest.consume import Record, build_tables
from movierec.schemas import DRIFT, RATE, RECO, TABLES, USERS, WATCH

T0 = datetime(2026, 11, 20, 10, 0)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> settings_module.Settings:
    home = tmp_path_factory.mktemp("quality")
    return replace(settings_module.load({"MOVIEREC_HOME": str(home)}), quality_max_bad_share=0.5)


def with_changes(
    schema: pa.Schema, data: list[dict[str, Any]], changes: dict[str, dict[int, Any]]
) -> pa.Table:
    """``data`` as a table of ``schema`` after ``changes``, which map a column to {row: value}."""
    for column, values in changes.items():
        for row, value in values.items():
            data[row][column] = value
    return pa.Table.from_pylist(data, schema=schema)


def watch(rows: int, **changes: dict[int, Any]) -> pa.Table:
    """``rows`` clean watch rows with ``changes`` (see ``with_changes``)."""
    data = [
        {
            "time": T0 + timedelta(seconds=n),
            "user_id": 1 + n,
            "movie_id": "the+matrix+1999",
            "minute": n % 100,
            "partition": n % 2,
            "offset": n,
        }
        for n in range(rows)
    ]
    return with_changes(WATCH, data, changes)


def rate(rows: int, **changes: dict[int, Any]) -> pa.Table:
    data = [
        {
            "time": T0,
            "user_id": 1 + n,
            "movie_id": "up+2009",
            "rating": 1 + n % 5,
            "partition": 0,
            "offset": n,
        }
        for n in range(rows)
    ]
    return with_changes(RATE, data, changes)


def reco(rows: int) -> pa.Table:
    data = [
        {
            "time": T0,
            "user_id": 1 + n,
            "server": "10.0.0.1:8082",
            "status": 200 if n % 3 else 0,
            "items": ["up+2009", "heat+1995"] if n % 3 else [],
            "error": None if n % 3 else "java.net.ConnectException: Connection refused",
            "latency_ms": 20 + n,
            "partition": 1,
            "offset": n,
        }
        for n in range(rows)
    ]
    return pa.Table.from_pylist(data, schema=RECO)


def test_clean_tables_pass_with_empty_masks(settings: settings_module.Settings) -> None:
    result = quality.check_tables(
        settings, {"watch": watch(30), "rate": rate(10), "reco": reco(9)}, "batch-clean"
    )
    assert result.failed == {}
    result.raise_if_failed()
    for name, rows in (("watch", 30), ("rate", 10), ("reco", 9)):
        assert result.bad_rows[name].dtype == bool and result.bad_rows[name].shape == (rows,)
        assert not result.bad_rows[name].any() and result.reasons[name] == [None] * rows
        assert result.summary[name]["success"] is True
    json.dumps(result.summary)  # JSON-able, for the task report


def test_bad_rows_are_masked_with_the_expectation_they_failed(settings: settings_module.Settings) -> None:
    tables = {
        "watch": watch(
            40,
            movie_id={3: "The+Matrix+1999"},  # the grammar lets capitals through; the slug alphabet does not
            minute={5: -1, 6: 700},
            offset={9: 8},  # with partition 0: the key (0, 8) of row 8 twice
            partition={9: 0},
            time={11: datetime(1970, 1, 1)},
        ),
        "rate": rate(10, rating={4: 9}),
        "reco": reco(9),
    }
    result = quality.check_tables(settings, tables, "batch-bad-rows")
    assert result.failed == {}  # 7 of 40 and 1 of 10 are below the 50% of this module's settings
    reasons = {i: r for i, r in enumerate(result.reasons["watch"]) if r}
    assert reasons == {
        3: "movie_id_is_slug",
        5: "minute_in_range",
        6: "minute_in_range",
        8: "key_unique",
        9: "key_unique",
        11: "time_plausible",
    }
    assert list(np.flatnonzero(result.bad_rows["watch"])) == sorted(reasons)
    assert list(np.flatnonzero(result.bad_rows["rate"])) == [4]
    assert result.reasons["rate"][4] == "rating_in_range"
    assert not result.bad_rows["reco"].any()
    by_name = {e["name"]: e for e in result.summary["watch"]["expectations"]}
    assert by_name["minute_in_range"]["unexpected_count"] == 2 and not by_name["minute_in_range"]["success"]
    assert by_name["user_id_positive"]["success"]


def test_a_row_failing_several_expectations_gets_the_first_in_suite_order() -> None:
    outcomes = [
        {"name": "a", "row_level": True, "indices": [2], "success": False, "unexpected_count": 1},
        {"name": "b", "row_level": True, "indices": [2, 4], "success": False, "unexpected_count": 2},
        {"name": "columns", "row_level": False, "indices": None, "success": True, "unexpected_count": 0},
    ]
    mask, reasons = quality.row_masks(5, outcomes)
    assert mask.tolist() == [False, False, True, False, True]
    assert reasons == [None, None, "a", None, "b"]
    assert quality.judge(5, 2, outcomes, 0.5) is None
    assert "2 of 5 rows (40.00%)" in (quality.judge(5, 2, outcomes, 0.3) or "")


def test_reco_rules_tie_status_error_and_items(settings: settings_module.Settings) -> None:
    rows = reco(6).to_pylist()
    rows[1]["error"] = "boom"  # status 200 with an error text
    rows[3]["items"] = ["up+2009"]  # status 0 with items
    rows[4]["status"] = 999  # not an HTTP status
    rows[5]["latency_ms"] = -4
    result = quality.check_tables(settings, {"reco": pa.Table.from_pylist(rows, schema=RECO)}, "batch-reco")
    assert {i: r for i, r in enumerate(result.reasons["reco"]) if r} == {
        1: "no_error_on_success",
        3: "no_items_on_failure",
        4: "status_known",
        5: "latency_non_negative",
    }


def test_above_the_threshold_the_batch_fails_naming_table_share_and_expectations(
    settings: settings_module.Settings,
) -> None:
    strict = replace(settings, quality_max_bad_share=0.05)
    result = quality.check_tables(strict, {"watch": watch(20, minute={1: -1, 2: -2}), "rate": rate(5)}, "b-x")
    assert set(result.failed) == {"watch"}
    with pytest.raises(quality.QualityError) as raised:
        result.raise_if_failed()
    message = str(raised.value)
    assert "watch" in message and "2 of 20 rows (10.00%)" in message and "minute_in_range (2)" in message
    assert result.bad_rows["watch"].sum() == 2  # the masks are still there for the log


def test_a_table_not_in_the_lake_schema_fails_the_batch(settings: settings_module.Settings) -> None:
    wrong = watch(5).cast(WATCH.set(WATCH.get_field_index("minute"), pa.field("minute", pa.int64(), False)))
    result = quality.check_tables(settings, {"watch": wrong}, "batch-schema")
    assert "minute: int64 instead of int32" in result.failed["watch"]
    with pytest.raises(quality.QualityError, match="watch"):
        result.raise_if_failed()


def test_table_level_expectations_failing_fail_the_table(settings: settings_module.Settings) -> None:
    frame = quality.to_frame(rate(4)).drop(columns=["rating"])
    summary = quality.validate_frame(settings, "rate", frame, "missing-column")
    assert not summary["success"] and "columns_as_expected" in summary["failed_expectations"]
    outcomes = [{**e, "indices": None} for e in summary["expectations"]]
    assert "columns_as_expected" in (quality.judge(4, 0, outcomes, 1.0) or "row-level only")


def test_empty_tables_are_skipped_not_failed(settings: settings_module.Settings) -> None:
    result = quality.check_tables(settings, {"rate": RATE.empty_table()}, "batch-empty")
    assert result.failed == {} and result.bad_rows["rate"].shape == (0,)


def test_results_are_stored_per_batch_and_data_docs_are_built(settings: settings_module.Settings) -> None:
    result = quality.check_tables(settings, {"watch": watch(3)}, "batch-docs-1234")
    index = quality.data_docs_index(settings)
    assert result.results_path == index and index.is_file()
    stored = Path(result.summary["watch"]["results_path"])
    assert stored.is_file() and "batch-docs-1234" in stored.parts
    assert json.loads(stored.read_text())["success"] is True
    page = Path(result.summary["watch"]["data_docs_page"])
    assert page.is_file() and "batch-docs-1234" in index.read_text()


def test_old_runs_are_pruned_and_leave_the_index(settings: settings_module.Settings, tmp_path: Path) -> None:
    small = replace(settings, home=tmp_path, quality_keep_runs=2)
    for n in range(4):
        quality.check_tables(small, {"rate": rate(3)}, f"run-{n}")
    runs = sorted(p.name for p in (tmp_path / "gx" / "uncommitted" / "validations" / "rate").iterdir())
    assert runs == ["run-2", "run-3"]
    index = quality.data_docs_index(small).read_text()
    assert "run-3" in index and "run-0" not in index


def drift_rows(drifted: list[bool]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "batch_id": "b1",
                "computed_at": datetime(2026, 11, 28, tzinfo=UTC),
                "signal": f"signal_{n}",
                "test": "psi",
                "statistic": 0.01 + n if n else None,  # null: too little data to compare
                "p_value": None,
                "threshold": 0.25,
                "reference_rows": 1000,
                "batch_rows": 100,
                "drifted": flag,
            }
            for n, flag in enumerate(drifted)
        ],
        schema=DRIFT,
    )


def test_drift_suite_fails_when_a_signal_drifted(settings: settings_module.Settings) -> None:
    calm = quality.validate_frame(settings, "drift", drift_rows([False, False, False]), "drift-b1")
    assert calm["success"] and calm["failed_expectations"] == []
    # as movierec.ingest.drift calls it: a pandas frame
    strong = quality.validate_frame(
        settings, "drift", drift_rows([False, True, False]).to_pandas(), "drift-b2"
    )
    assert not strong["success"] and strong["failed_expectations"] == ["signal_not_drifted"]
    by_name = {e["name"]: e for e in strong["expectations"]}
    assert by_name["signal_not_drifted"]["unexpected_count"] == 1
    assert Path(strong["results_path"]).is_file() and "drift-b2" in strong["results_path"]
    json.dumps(strong)


def test_catalog_suites_check_users(settings: settings_module.Settings) -> None:
    fetched = datetime(2026, 11, 28, tzinfo=UTC)
    users = pa.Table.from_pylist(
        [
            {"user_id": 1, "age": 34, "occupation": "writer", "gender": "F", "fetched_at": fetched},
            {"user_id": 2, "age": None, "occupation": None, "gender": None, "fetched_at": fetched},
            {"user_id": 3, "age": 250, "occupation": "wizard", "gender": "X", "fetched_at": fetched},
        ],
        schema=USERS,
    )
    summary = quality.validate_frame(settings, "users", users, "catalog-users")
    failed = {e["name"]: e["unexpected_count"] for e in summary["expectations"] if not e["success"]}
    assert failed == {"age_in_range": 1, "occupation_known": 1, "gender_known": 1}


def test_suites_in_the_repository_cover_every_table_and_name_real_columns() -> None:
    suites, checkpoints = quality.load_definitions()
    # catalog_unknown is our own record of the API's 404 answers, not data the site sent us
    wanted = set(TABLES) - {"catalog_unknown"}
    assert wanted <= set(suites) and wanted <= set(checkpoints)
    for name in wanted:
        schema = TABLES[name]
        columns = set(quality.to_frame(schema.empty_table()).columns)
        for expectation in suites[name]["expectations"]:
            kwargs = expectation["kwargs"]
            named = {kwargs.get("column"), kwargs.get("column_A"), kwargs.get("column_B")}
            named |= set(kwargs.get("column_list", []))
            assert named - {None} <= columns, (name, expectation["meta"]["name"])
            if expectation["meta"]["name"] == "columns_as_expected":
                assert kwargs["column_list"] == list(quality.to_frame(schema.empty_table()).columns)


def test_gx_runs_every_expectation_of_every_suite_and_refuses_an_unknown_type() -> None:
    suites, _checkpoints = quality.load_definitions()
    for name, spec in suites.items():
        suite = quality.gx_suite(spec)
        assert len(suite.expectations) == len(spec["expectations"]), name
    misspelt = json.loads(json.dumps(suites["availability"]))
    misspelt["expectations"][0]["type"] = "expect_column_pair_values_A_to_be_greater_than_B"
    name = misspelt["expectations"][0]["meta"]["name"]
    with pytest.raises(quality.SuiteError, match=f"does not know these expectations: {name}"):
        quality.gx_suite(misspelt)


SLUG = r"^[a-z0-9]+(?:\+[a-z0-9]+)*\+[0-9]{4}$"


def test_the_per_value_regex_check_gives_each_row_the_verdict_of_gxs_own_per_row_check() -> None:
    from movierec.ingest import gx_expectations

    values = ["the+matrix+1999", "The+Matrix+1999", "alien+1979", "x+12", None, 7, np.nan, "", "up+2009"]
    column = pd.Series(np.random.default_rng(3).choice(np.array(values, dtype=object), 500), dtype=object)
    column.index = column.index + 100  # a frame's slice keeps its own index
    got = gx_expectations.matches_once_per_value(column, SLUG)
    expected = column.astype(str).str.contains(SLUG)  # GX's pandas form of match_regex, row by row
    assert got.index.equals(column.index)
    assert got.tolist() == expected.tolist() and 0 < got.sum() < len(got)


def test_gx_reports_the_same_rows_for_the_per_value_type_as_for_its_own() -> None:
    import great_expectations as gx

    quality.load_gx()
    frame = pd.DataFrame({"movie_id": ["up+2009", "Up+2009", "up+2009", None, "up 2009", "heat+1995"] * 50})
    batch = (
        gx.get_context(mode="ephemeral")
        .data_sources.add_pandas("frames")
        .add_dataframe_asset("movies")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    unexpected = {}
    for kind in ("expect_column_values_to_match_regex", "expect_column_values_to_match_regex_once_per_value"):
        suite = quality.gx_suite(
            {
                "name": kind,
                "expectations": [
                    {"type": kind, "kwargs": {"column": "movie_id", "regex": SLUG}, "meta": {"name": "slug"}}
                ],
            }
        )
        result = batch.validate(suite.expectations[0], result_format="COMPLETE")
        unexpected[kind] = (result.success, list(result.result["unexpected_index_list"]))
    capitals_and_spaces = sorted([1 + 6 * n for n in range(50)] + [4 + 6 * n for n in range(50)])
    for kind, (success, rows) in unexpected.items():
        assert not success and sorted(rows) == capitals_and_spaces, kind  # the None row is GX's to skip


def test_a_broken_suite_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "suites").mkdir()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "suites" / "watch.json").write_text('{"name": "watch", "expectations": [{"type": "x"}]}')
    with pytest.raises(quality.SuiteError, match=r"meta\.name"):
        quality.load_definitions(tmp_path)
    (tmp_path / "suites" / "watch.json").write_text("{not json")
    with pytest.raises(quality.SuiteError, match="not valid JSON"):
        quality.load_definitions(tmp_path)


def test_frame_is_a_vectorisable_view_that_keeps_every_row() -> None:
    table = watch(3, time={2: datetime(9999, 1, 1)})
    frame = quality.to_frame(table)
    assert list(frame.index) == [0, 1, 2] and str(frame["minute"].dtype) == "int64"
    assert str(frame["time"].dtype) == "datetime64[ns]"
    assert str(frame["movie_id"].dtype) == "category"
    assert frame["movie_id"].tolist() == ["the+matrix+1999"] * 3
    assert str(quality.to_frame(table.to_pandas())["movie_id"].dtype) == "category"  # a frame given as is too
    numbers = quality.to_frame(pd.DataFrame({"movie_id": [1, 2]}))  # not strings: the dtype check must fail
    assert str(numbers["movie_id"].dtype) == "int64"
    assert frame["time"][2] > pd.Timestamp("2200-01-01")  # clipped to the end of ns time, still implausible
    reco_frame = quality.to_frame(reco(3))
    assert reco_frame["items_count"].tolist() == [0, 2, 2] and "items" not in reco_frame
    users = quality.to_frame(
        pa.table({"age": pa.array([3, None], pa.int16())}, schema=pa.schema([USERS.field("age")]))
    )
    assert np.isnan(users["age"][1])


def test_ingest_moves_rows_failing_quality_to_quarantine(settings: settings_module.Settings) -> None:
    lines = [
        b"2026-11-20T10:00:00,7,GET /data/m/the+matrix+1999/1.mpg",
        b"2026-11-20T10:00:01,7,GET /data/m/the+matrix+1999/700.mpg",  # the grammar's minute, not ours
        b"2026-11-20T10:00:02,8,GET /data/m/Heat+1995/3.mpg",
        b"2026-11-20T10:00:03,8,GET /rate/heat+1995=4",
    ] + [f"2026-11-20T10:01:{n:02d},9,GET /data/m/up+2009/{n}.mpg".encode() for n in range(10)]
    records = [Record(0, 50 + n, 1_795_000_000_000, line) for n, line in enumerate(lines)]
    tables = consume.apply_quality(settings, "batch-ingest", build_tables(records))
    quarantine = tables["quarantine"].filter(pc.equal(tables["quarantine"]["stage"], "quality"))
    assert dict(zip(quarantine["offset"].to_pylist(), quarantine["reason"].to_pylist(), strict=True)) == {
        51: "minute_in_range",
        52: "movie_id_is_slug",
    }
    assert quarantine["line"].to_pylist() == [lines[1].decode(), lines[2].decode()]
    assert tables["watch"].num_rows == 11 and tables["rate"].num_rows == 1
    assert 51 not in tables["watch"]["offset"].to_pylist()


def test_a_project_config_truncated_by_a_killed_run_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    """What the ingest crash test caught: SIGKILL while GX rewrote its yml left it unreadable."""
    settings = replace(settings_module.load({"MOVIEREC_HOME": str(tmp_path)}), quality_max_bad_share=0.5)
    quality.context(settings)  # the project exists, as after a first run
    config = quality.gx_dir(settings) / quality.GX_CONFIG_FILE
    whole = config.read_text()
    config.write_text(whole[: len(whole) // 3])  # cut mid-write
    quality._CONTEXTS.clear()  # a new process

    result = quality.check_tables(settings, {"watch": watch(30, minute={3: -1})}, "after-the-crash")

    assert result.summary["watch"]["success"] is False and result.bad_rows["watch"].sum() == 1
    assert len(list(config.parent.glob(quality.GX_CONFIG_FILE + ".broken-*"))) == 1  # kept to look at
    assert f"{quality.DATASOURCE}:" in config.read_text()  # the data source is installed again
