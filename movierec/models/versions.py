"""Model versions: their ids and the layout of a model folder (the contract between learning and serving).

    $MOVIEREC_HOME/models/<version>/                    written by the retrain's tasks, in order
        users.parquet        user_id int64, uidx int32   (contiguous 0..n-1): every user with
                             an interaction and every user the catalog has fetched   prepare
        movies.parquet       movie_id string, iidx int32 (contiguous 0..m-1)            prepare
        seen.parquet         uidx int32, iidx int32: every interaction up to the data end   prepare
        fallback.json        {"items": [up to 20 slugs]}: recent global popularity, for unknown users
        params.json          split time T, data window, counts, Spark                 prepare
        data_manifest.json   the Parquet files read (path, sha256, rows) and their Kafka offset range
        prepared/            learning's own intermediate data (train/test interactions, user groups,
                             the catalog users' demographics, the fallback before T)   prepare
        candidates/<name>/   every model compared (movierec/models/candidates):         train
            train.json       {"kind", "name", "params", "cost"}
            before_t/        fitted before T (evaluated)
            all/             refitted on all data (served)
        metrics.json         offline metrics of the chosen candidate ("recall_at_20" at top level)
                             and of every other one ("candidates")                      evaluate
        model.json           {version, created_at, git_commit, model: its kind, candidate: the
                             chosen name, split_time}                                   evaluate
    $MOVIEREC_HOME/reports/<version>/
        report.md, report.json   the comparison and the choice                          evaluate
        serving-<id>.json        a serving file's size and lookup latency               precompute

A version id is a UTC time, ``YYYYMMDDTHHMMSSZ`` (sortable as text): the retrain DAG takes it from
its run (``run_version``), so a retried or cleared run works on its own version again.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from movierec.settings import REPO_ROOT, Settings

VERSION_FORMAT = "%Y%m%dT%H%M%SZ"
VERSION_PATTERN = r"\d{8}T\d{6}Z"
CANDIDATE_PATTERN = r"[a-z0-9_]+"
_VERSION_RE = re.compile(rf"^{VERSION_PATTERN}$")

USERS_FILE = "users.parquet"
MOVIES_FILE = "movies.parquet"
SEEN_FILE = "seen.parquet"
FALLBACK_FILE = "fallback.json"
PARAMS_FILE = "params.json"
DATA_MANIFEST_FILE = "data_manifest.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.json"
PREPARED_DIR = "prepared"
FALLBACK_BEFORE_T = "fallback_before_t.json"  # in prepared/: {"iidx": [...]}, the fallback before T
DEMOGRAPHICS_FILE = "demographics.parquet"  # in prepared/: uidx, age_band, gender, occupation
CANDIDATES_DIR = "candidates"
TRAIN_FILE = "train.json"
WINDOWS = ("before_t", "all")  # fitted before T to be evaluated; on all data to be served
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
SERVING_REPORT = "serving-{serving_id}.json"


class VersionError(ValueError):
    """Not a version id, or a version whose folder does not exist."""


def new_version_id(now: datetime | None = None) -> str:
    """The version id of a retrain started at ``now`` (default: the current UTC time)."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(VERSION_FORMAT)


def run_version(data_interval_end: datetime | None, run_after: datetime) -> str:
    """The version of an Airflow run: its data interval's end, or (a manual run has none) the
    time it was triggered for. Both stay the same when the run is retried or cleared."""
    return new_version_id(data_interval_end or run_after)


def check_version(version: str) -> str:
    """``version`` if it is a well-formed id; a clear error otherwise (it becomes part of paths)."""
    try:
        if isinstance(version, str) and _VERSION_RE.match(version):
            datetime.strptime(version, VERSION_FORMAT)  # also rejects month 13 and the like
            return version
    except ValueError:
        pass
    raise VersionError(f"{version!r} is not a version id (expected UTC time like 20261128T101502Z)")


def model_dir(settings: Settings, version: str) -> Path:
    return settings.models_dir / check_version(version)


def report_dir(settings: Settings, version: str) -> Path:
    return settings.reports_dir / check_version(version)


def prepared_dir(settings: Settings, version: str) -> Path:
    return model_dir(settings, version) / PREPARED_DIR


def check_candidate(name: str) -> str:
    """``name`` if it is a candidate model name (it becomes part of paths and serving ids)."""
    if not isinstance(name, str) or not re.fullmatch(CANDIDATE_PATTERN, name):
        raise VersionError(f"{name!r} is not a candidate model name (lowercase letters, digits, _)")
    return name


def candidate_dir(settings: Settings, version: str, name: str) -> Path:
    return model_dir(settings, version) / CANDIDATES_DIR / check_candidate(name)


def fitted_dir(settings: Settings, version: str, name: str, window: str) -> Path:
    if window not in WINDOWS:
        raise VersionError(f"{window!r} is not a training window ({', '.join(WINDOWS)})")
    return candidate_dir(settings, version, name) / window


def serving_report_path(settings: Settings, version: str, serving_id: str) -> Path:
    """Precompute's figures for one serving file of ``version`` (its size, lookup latency)."""
    return report_dir(settings, version) / SERVING_REPORT.format(serving_id=serving_id)


def list_model_folders(settings: Settings) -> list[str]:
    """The versions that have a model folder, oldest first."""
    folder = settings.models_dir
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _VERSION_RE.match(p.name))


# ---------------------------------------------------------------- reading a model folder

# What precompute needs to write a serving file (besides the scores), and the JSON it copies into meta.
REQUIRED_FILES = (USERS_FILE, MOVIES_FILE, FALLBACK_FILE, PARAMS_FILE, DATA_MANIFEST_FILE)
JSON_FILES = (PARAMS_FILE, DATA_MANIFEST_FILE, METRICS_FILE, MODEL_FILE)


def read_model_folder(folder: Path) -> dict[str, object]:
    """The JSON files of a model folder, parsed; a missing required file is a clear error."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder {folder}")
    missing = [name for name in REQUIRED_FILES if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"model folder {folder} lacks {', '.join(missing)}")
    parsed: dict[str, object] = {}
    for name in (*JSON_FILES, FALLBACK_FILE):
        path = folder / name
        if path.exists():
            try:
                parsed[name] = json.loads(path.read_text())
            except ValueError as exc:
                raise ValueError(f"{path} is not valid JSON: {exc}") from None
    return parsed


def challenger_of(settings: Settings, version: str) -> str | None:
    """The candidate evaluate named for a canary to test (``model.json``'s ``challenger``) when it is
    not the chosen candidate, which the version's own serving file serves; else None."""
    path = model_dir(settings, version) / MODEL_FILE
    if not path.exists():
        return None
    model = json.loads(path.read_text())
    challenger = model.get("challenger")
    return challenger if challenger and challenger != model.get("candidate") else None


def model_catalog(folder: Path) -> frozenset[str]:
    """Every movie id the model knows (``movies.parquet``)."""
    import pyarrow.parquet as pq  # here, not at the top: serving_file imports this module in every worker

    path = folder / MOVIES_FILE
    if not path.exists():
        raise FileNotFoundError(f"cannot check ids: {path} is missing")
    return frozenset(pq.read_table(path, columns=["movie_id"]).column("movie_id").to_pylist())


def model_user_count(folder: Path) -> int | None:
    """Users the model knows (rows of ``users.parquet``), None without the file."""
    import pyarrow.parquet as pq

    path = folder / USERS_FILE
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else None


def pipeline_commit(repo: Path = REPO_ROOT) -> str:
    """``git rev-parse HEAD`` of the pipeline's repository, ``-dirty`` if tracked files changed."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"  # not a checkout (an installed copy): provenance still has the model folder
    return f"{head}-dirty" if dirty else head
