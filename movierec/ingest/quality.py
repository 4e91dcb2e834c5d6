"""Data quality of the lake's tables with Great Expectations 1.x.

The suites and checkpoint definitions live in the repository (``expectations/``,
the source of truth); the GX file context lives under ``$MOVIEREC_HOME/gx`` and
is brought in line with the repository once per process. Each table of a batch
is validated by its own checkpoint (run name = the batch id); the results are
stored by GX and rendered into the data docs (``gx/uncommitted/data_docs/local_site/index.html``).

Rows that fail a row-level expectation become a boolean mask per table, with the
name of the first failed expectation (the suite's order) per row; ingest moves
them to quarantine. Too many such rows, or any table-level expectation failing
(columns, types), fails the batch.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from movierec.schemas import TABLES
from movierec.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

EXPECTATIONS_DIR = REPO_ROOT / "expectations"
DATASOURCE = "movierec"
BATCH_DEFINITION = "whole_frame"
SOURCE_KEY = "movierec_source_sha256"  # in a stored suite's meta: which repository JSON it came from

# Row masks need every unexpected index (COMPLETE), but not the values themselves nor the
# pandas "query" (a second copy of the index list): the stored results stay small.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 20,
}


class QualityError(RuntimeError):
    """A batch failed its expectations: too many bad rows, or a table-level expectation failed."""


class SuiteError(ValueError):
    """A suite or checkpoint definition in expectations/ is missing or malformed."""


@dataclass
class QualityResult:
    """What the expectations said about one batch's tables."""

    bad_rows: dict[str, np.ndarray] = field(default_factory=dict)  # table -> bool per row
    reasons: dict[str, list[str | None]] = field(default_factory=dict)  # table -> failed expectation per row
    failed: dict[str, str] = field(default_factory=dict)  # table -> why the batch must not pass
    summary: dict[str, Any] = field(default_factory=dict)  # JSON-able, per table
    results_path: Path | None = None  # the data docs index
    run_keys: list[Any] = field(default_factory=list)  # GX's keys of this batch's stored results

    def raise_if_failed(self) -> None:
        if self.failed:
            details = "; ".join(f"{table}: {why}" for table, why in sorted(self.failed.items()))
            raise QualityError(f"data quality failed ({details}); results: {self.results_path}")


# --- the repository's definitions: pure ----------------------------------------------------


def load_definitions(folder: Path = EXPECTATIONS_DIR) -> tuple[dict[str, dict], dict[str, dict]]:
    """The suites and checkpoints of ``folder`` by name, checked for the fields we rely on."""
    suites: dict[str, dict] = {}
    for path in sorted((folder / "suites").glob("*.json")):
        spec = _read_json(path)
        names = [e.get("meta", {}).get("name") for e in spec.get("expectations", [])]
        if spec.get("name") != path.stem or not names or None in names or len(set(names)) != len(names):
            raise SuiteError(f"{path}: needs name={path.stem!r} and a unique meta.name per expectation")
        suites[path.stem] = spec
    checkpoints: dict[str, dict] = {}
    for path in sorted((folder / "checkpoints").glob("*.json")):
        spec = _read_json(path)
        if spec.get("name") != path.stem or spec.get("suite") not in suites or not spec.get("data_asset"):
            raise SuiteError(f"{path}: needs name={path.stem!r}, a known suite and a data_asset")
        checkpoints[path.stem] = spec
    if not suites:
        raise SuiteError(f"no suites in {folder / 'suites'}")
    return suites, checkpoints


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not valid JSON: {exc}") from None


def fingerprint(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


# Nanosecond timestamps cover 1677..2262; times outside are clipped to those ends, which still
# fail every plausibility range, instead of overflowing into plausible-looking dates.
_NS_MIN_US = pd.Timestamp.min.value // 1000 + 1
_NS_MAX_US = pd.Timestamp.max.value // 1000 - 1


CATEGORICAL = frozenset({"movie_id"})  # few distinct values, many rows


def to_frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """The frame GX validates: one row per table row, in order, with a 0..n-1 index (= row position).

    It is a numeric view of the Arrow table, in the dtypes GX's pandas engine checks vectorised
    (other dtypes fall back to a Python call per value, ~10x slower): integers as int64, or
    float64 where the schema lets them be null; times as datetime64[ns]; dates as datetime64.
    The exact Arrow types are fixed by the schemas (``schema_problem``). Binary columns are
    left out; a list column ``x`` becomes ``x_count``, its length. The catalog's ids
    (``CATEGORICAL``) become pandas categoricals: a batch names ~27K movies in a million rows, and
    as Python strings every null check, copy and regex of GX went over each row (half of a watch
    batch's validation); the suites check them as categoricals.
    """
    if isinstance(table, pd.DataFrame):
        frame = table.reset_index(drop=True)
        for name in CATEGORICAL & set(frame.columns):
            if pd.api.types.is_object_dtype(frame[name]):  # strings only: other dtypes fail the check
                frame[name] = frame[name].astype("category")
        return frame
    columns: dict[str, pa.ChunkedArray] = {}
    for spec, column in zip(table.schema, table.columns, strict=True):
        kind = spec.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            continue
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            columns[f"{spec.name}_count"] = pc.cast(pc.list_value_length(column), pa.int64())
        elif pa.types.is_integer(kind):
            columns[spec.name] = pc.cast(column, pa.float64() if spec.nullable else pa.int64())
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            columns[spec.name] = _nanosecond_times(column, getattr(kind, "tz", None))
        elif spec.name in CATEGORICAL and pa.types.is_string(kind):
            columns[spec.name] = pc.dictionary_encode(column.combine_chunks())
        else:
            columns[spec.name] = column
    nullable_bools = {pa.bool_(): pd.BooleanDtype()}  # a bool column with nulls stays boolean
    return pa.table(columns).to_pandas(date_as_object=False, types_mapper=nullable_bools.get)


def _nanosecond_times(column: pa.ChunkedArray, tz: str | None) -> pa.ChunkedArray:
    micros = pc.cast(pc.cast(column, pa.timestamp("us", tz)), pa.int64())
    clipped = pc.min_element_wise(
        pc.max_element_wise(micros, _NS_MIN_US, skip_nulls=False), _NS_MAX_US, skip_nulls=False
    )
    return pc.cast(pc.cast(clipped, pa.timestamp("us", tz)), pa.timestamp("ns", tz))


def schema_problem(name: str, table: pa.Table) -> str | None:
    """How ``table`` differs from the lake schema of ``name`` (None if it matches or is not a lake table)."""
    expected = TABLES.get(name)
    if expected is None or table.schema.equals(expected):
        return None
    wanted = {f.name: str(f.type) for f in expected}
    got = {f.name: str(f.type) for f in table.schema}
    diffs = [f"{c}: {got.get(c, 'missing')} instead of {t}" for c, t in wanted.items() if got.get(c) != t]
    diffs += [f"{c}: unexpected column" for c in got if c not in wanted]
    return f"schema differs from movierec.schemas: {', '.join(diffs) or 'nullability or order'}"


def outcomes_of(validation_result: Any) -> list[dict[str, Any]]:
    """Per expectation, in suite order: name, success, unexpected count, failing row indices (row-level)."""
    out = []
    for result in validation_result.results:
        config = result.expectation_config
        details = result.result or {}
        indices = details.get("unexpected_index_list")
        error = result.exception_info.get("exception_message") if result.exception_info else None
        out.append(
            {
                "name": (config.meta or {}).get("name", config.type),
                "type": config.type,
                "success": bool(result.success),
                "row_level": indices is not None and not error,
                "unexpected_count": int(details.get("unexpected_count") or 0),
                "observed_value": _jsonable(details.get("observed_value")),
                "error": error,
                "indices": list(indices) if indices is not None else None,
            }
        )
    return out


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def row_masks(rows: int, outcomes: list[dict[str, Any]]) -> tuple[np.ndarray, list[str | None]]:
    """The rows failing any row-level expectation, and per row the first one (in suite order) it failed."""
    mask = np.zeros(rows, dtype=bool)
    reasons: list[str | None] = [None] * rows
    for outcome in outcomes:
        if not outcome["row_level"] or not outcome["indices"]:
            continue
        for index in outcome["indices"]:
            if not mask[index]:
                mask[index] = True
                reasons[index] = outcome["name"]
    return mask, reasons


def judge(rows: int, bad: int, outcomes: list[dict[str, Any]], max_bad_share: float) -> str | None:
    """Why a table must fail the batch, or None if its bad rows can be quarantined."""
    broken = [o["name"] for o in outcomes if not o["success"] and not o["row_level"]]
    if broken:
        return f"table-level expectations failed: {', '.join(broken)}"
    share = bad / rows if rows else 0.0
    if share > max_bad_share:
        failing = sorted(
            (o for o in outcomes if o["row_level"] and o["unexpected_count"]),
            key=lambda o: -o["unexpected_count"],
        )
        named = ", ".join(f"{o['name']} ({o['unexpected_count']})" for o in failing)
        return f"{bad} of {rows} rows ({share:.2%}) fail expectations, above {max_bad_share:.2%}: {named}"
    return None


# --- the GX context: I/O -----------------------------------------------------------------------

GX_CONFIG_FILE = "great_expectations.yml"
# What _sync installs from expectations/ (results and data docs under uncommitted/ are kept).
DERIVED_STORES = ("checkpoints", "validation_definitions", "expectations")
_CONTEXTS: dict[Path, Any] = {}  # one file context per MOVIEREC_HOME and process (building one costs)


def gx_dir(settings: Settings) -> Path:
    return settings.home / "gx"


def data_docs_index(settings: Settings) -> Path:
    return gx_dir(settings) / "uncommitted" / "data_docs" / "local_site" / "index.html"


@contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One writer at a time in the GX folder (the ingest, drift and catalog tasks may overlap)."""
    path = gx_dir(settings) / ".movierec.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def context(settings: Settings) -> Any:
    """The GX file context of ``settings.home``, in line with expectations/ (cached per process).

    GX rewrites its files in place, so a task killed while it writes (SIGKILL, out of memory; the
    ingest crash test does it) can leave ``great_expectations.yml`` truncated, or still valid YAML
    that lost the data source the stored checkpoints name, and every later run would fail on it.
    The project config and the stores that refer to it are derived from our settings and
    ``expectations/``, so when they cannot be read back they are set aside (kept to look at) and
    installed anew, once; validation results and data docs stay. A second failure is raised.
    """
    home = settings.home.resolve()
    if home not in _CONTEXTS:
        logging.getLogger("great_expectations").setLevel(logging.WARNING)  # its INFO chatter floods task logs
        suites, checkpoints = load_definitions()
        with _locked(settings):
            try:
                ctx = _open_and_sync(settings, suites, checkpoints)
            except Exception as exc:  # whatever GX raises reading its own files back
                _set_aside(settings, exc)
                ctx = _open_and_sync(settings, suites, checkpoints)
        _CONTEXTS[home] = ctx
    return _CONTEXTS[home]


def load_gx() -> Any:
    """GX, imported on first use (seconds), with our own expectation types registered."""
    import great_expectations as gx

    from movierec.ingest import gx_expectations  # noqa: F401  (registers its types with GX)

    return gx


def _open_and_sync(settings: Settings, suites: dict[str, dict], checkpoints: dict[str, dict]) -> Any:
    gx = load_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", project_root_dir=str(settings.home.resolve()))
    if ctx.variables.progress_bars is None or ctx.variables.analytics_enabled is not False:
        # tqdm bars would flood the task logs; our own log line reports progress
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        ctx.variables.analytics_enabled = False
        ctx.variables.save()
    _sync(ctx, suites, checkpoints)
    return ctx


def _set_aside(settings: Settings, exc: Exception) -> None:
    """Move the project config aside and drop the stores derived from it, for a fresh install."""
    folder = gx_dir(settings)
    config = folder / GX_CONFIG_FILE
    aside = config.with_name(f"{GX_CONFIG_FILE}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
    if config.exists():
        config.rename(aside)
    for store in DERIVED_STORES:
        shutil.rmtree(folder / store, ignore_errors=True)
    log.warning(
        "quality: the GX project could not be read back (%s: %s); config kept as %s, reinstalled",
        type(exc).__name__,
        str(exc).splitlines()[0] if str(exc) else "",
        aside.name,
    )


def gx_suite(spec: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> Any:
    """The GX suite of a repository suite definition; SuiteError if GX would not run all of it.

    GX logs an expectation type it does not know and leaves it out of the suite, so a misspelt
    type would silently never be checked.
    """
    gx = load_gx()

    suite = gx.ExpectationSuite(
        name=spec["name"],
        expectations=list(spec["expectations"]),
        notes=spec.get("notes"),
        meta={**spec.get("meta", {}), **(meta or {})},
    )
    kept = {e.meta.get("name") for e in suite.expectations if e.meta}
    dropped = [
        f"{e['meta']['name']} ({e['type']})" for e in spec["expectations"] if e["meta"]["name"] not in kept
    ]
    if dropped:
        raise SuiteError(f"suite {spec['name']}: GX does not know these expectations: {', '.join(dropped)}")
    return suite


def _sync(ctx: Any, suites: dict[str, dict], checkpoints: dict[str, dict]) -> None:
    """Bring the stored suites, validation definitions and checkpoints in line with the repository.

    Only what changed is written, so a context another process holds stays fresh.
    """
    gx = load_gx()
    from great_expectations.exceptions import DataContextError

    try:
        source = ctx.data_sources.get(DATASOURCE)
    except (KeyError, ValueError, DataContextError):
        source = ctx.data_sources.add_pandas(DATASOURCE)
    for name, spec in checkpoints.items():
        suite_spec = suites[spec["suite"]]
        wanted = fingerprint({"suite": suite_spec, "checkpoint": spec})
        try:
            stored = ctx.suites.get(spec["suite"])
        except DataContextError:
            stored = None
        try:
            ctx.checkpoints.get(name)
            has_checkpoint = True
        except DataContextError:
            has_checkpoint = False
        if stored is not None and (stored.meta or {}).get(SOURCE_KEY) == wanted and has_checkpoint:
            continue
        log.info("quality: installing suite and checkpoint %r from %s", name, EXPECTATIONS_DIR)
        try:
            asset = source.get_asset(spec["data_asset"])
        except LookupError:
            asset = source.add_dataframe_asset(spec["data_asset"])
        try:
            batch = asset.get_batch_definition(BATCH_DEFINITION)
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
        suite = ctx.suites.add_or_update(gx_suite(suite_spec, {SOURCE_KEY: wanted}))
        definition = ctx.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        ctx.checkpoints.add_or_update(
            gx.Checkpoint(
                name=name,
                validation_definitions=[definition],
                actions=spec.get("actions", []),
                result_format=RESULT_FORMAT,
            )
        )


def _run_checkpoint(settings: Settings, name: str, frame: pd.DataFrame, run_name: str) -> dict[str, Any]:
    """Run the checkpoint ``name`` on ``frame``; GX stores the result. Data docs are built apart."""
    from great_expectations.core.run_identifier import RunIdentifier

    ctx = context(settings)
    with _locked(settings):
        checkpoint = ctx.checkpoints.get(name)  # from the store: fresh even if another process synced
        run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
        result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
    key, validation = next(iter(result.run_results.items()))
    relative = Path(*key.to_tuple())
    return {
        "key": key,
        "success": bool(validation.success),
        "outcomes": outcomes_of(validation),
        "result_file": str(gx_dir(settings) / "uncommitted" / "validations" / relative.with_suffix(".json")),
        "data_docs_page": str(
            data_docs_index(settings).parent / "validations" / relative.with_suffix(".html")
        ),
    }


def build_data_docs(settings: Settings, keys: list[Any], suites: set[str]) -> Path:
    """Render this call's results once (not once per table) after pruning old runs; the index page."""
    ctx = context(settings)
    with _locked(settings):
        for suite in suites:
            _prune(settings, suite, settings.quality_keep_runs)
        ctx.build_data_docs(resource_identifiers=keys or None)
    return data_docs_index(settings)


def _prune(settings: Settings, suite: str, keep: int) -> None:
    """Keep the newest ``keep`` runs of a suite: rendering the data docs index reads every stored result."""
    folder = gx_dir(settings) / "uncommitted" / "validations" / suite
    if keep <= 0 or not folder.is_dir():
        return
    runs = sorted(
        (path for run in folder.iterdir() if run.is_dir() for path in run.iterdir() if path.is_dir()),
        key=lambda path: path.name,  # run times as GX writes them (20261128T101502.123456Z): sortable text
    )
    pages = data_docs_index(settings).parent / "validations" / suite
    for old in runs[:-keep]:
        page = pages / old.relative_to(folder)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(page, ignore_errors=True)
        for parent in (old.parent, page.parent):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()


def _summary(outcomes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in o.items() if k != "indices"} for o in outcomes]


def validate_frame(
    settings: Settings, suite_name: str, frame: pd.DataFrame | pa.Table, run_name: str
) -> dict[str, Any]:
    """Validate ``frame`` with the checkpoint of ``suite_name``; a JSON-able summary of the run.

    ``success`` is False when any expectation failed (for the ``drift`` suite: a signal drifted);
    ``results_path`` is the stored GX result, ``data_docs_page`` its rendered page.
    """
    table = to_frame(frame)
    if len(table) == 0:  # GX cannot type the columns of an empty frame: nothing to expect of no rows
        return {
            "suite": suite_name,
            "run_name": run_name,
            "rows": 0,
            "success": True,
            "skipped": "empty",
            "expectations": [],
            "failed_expectations": [],
            "results_path": None,
        }
    began = time.monotonic()
    run = _run_checkpoint(settings, suite_name, table, run_name)
    docs = build_data_docs(settings, [run["key"]], {suite_name})
    failed = {o["name"]: o["unexpected_count"] for o in run["outcomes"] if not o["success"]}
    log.info(
        "quality %s %s: %d rows, %s", run_name, suite_name, len(table), f"failed {failed}" if failed else "ok"
    )
    return {
        "suite": suite_name,
        "run_name": run_name,
        "rows": len(table),
        "success": run["success"],
        "expectations": _summary(run["outcomes"]),
        "failed_expectations": sorted(failed),
        "results_path": run["result_file"],
        "data_docs_page": run["data_docs_page"],
        "data_docs": str(docs),
        "seconds": round(time.monotonic() - began, 3),
    }


def check_tables(
    settings: Settings, tables: Mapping[str, pa.Table], batch_id: str, *, data_docs: bool = True
) -> QualityResult:
    """Validate each table of batch ``batch_id`` with its checkpoint; masks, reasons and the verdict.

    With ``data_docs=False`` the caller renders them (``build_batch_docs``), e.g. while it writes.
    """
    result = QualityResult(results_path=data_docs_index(settings))
    keys = result.run_keys
    for name, table in tables.items():
        rows = table.num_rows
        result.bad_rows[name], result.reasons[name] = np.zeros(rows, dtype=bool), [None] * rows
        problem = schema_problem(name, table)
        if problem:  # the expectations assume the lake's columns: nothing to mask, the batch fails
            result.failed[name] = problem
            result.summary[name] = {"rows": rows, "failed": problem}
            log.error("quality %s %s: %s", batch_id, name, problem)
            continue
        if rows == 0:  # GX cannot type the columns of an empty frame: nothing to expect of no rows
            result.summary[name] = {"rows": 0, "bad_rows": 0, "skipped": "empty"}
            continue
        began = time.monotonic()
        run = _run_checkpoint(settings, name, to_frame(table), batch_id)
        keys.append(run["key"])
        mask, reasons = row_masks(rows, run["outcomes"])
        bad = int(mask.sum())
        verdict = judge(rows, bad, run["outcomes"], settings.quality_max_bad_share)
        if verdict:
            result.failed[name] = verdict
        result.bad_rows[name], result.reasons[name] = mask, reasons
        seconds = time.monotonic() - began
        result.summary[name] = {
            "rows": rows,
            "bad_rows": bad,
            "bad_share": bad / rows,
            "success": run["success"],
            "failed": verdict,
            "expectations": _summary(run["outcomes"]),
            "results_path": run["result_file"],
            "data_docs_page": run["data_docs_page"],
            "seconds": round(seconds, 3),
        }
        failing = {o["name"]: o["unexpected_count"] for o in run["outcomes"] if not o["success"]}
        log.info(
            "quality %s %s: %d rows, %d bad (%.3f%%) %s in %.1f s%s",
            batch_id,
            name,
            rows,
            bad,
            100 * bad / rows,
            failing or "",
            seconds,
            f" -> FAILED: {verdict}" if verdict else "",
        )
    if data_docs:
        build_batch_docs(settings, result, batch_id)
    return result


def build_batch_docs(settings: Settings, result: QualityResult, batch_id: str) -> None:
    """Render the data docs of a batch's results (``check_tables``)."""
    keys = result.run_keys
    if keys:
        began = time.monotonic()
        build_data_docs(settings, keys, {str(key.expectation_suite_identifier.name) for key in keys})
        log.info("quality %s: data docs %s (%.1f s)", batch_id, result.results_path, time.monotonic() - began)
