"""Model versions: their ids and the layout of a model folder (the contract between learning and serving).

    $MOVIEREC_HOME/models/<version>/
        als/                 ALSModel.save() of the model to serve
        users.parquet        user_id int64, uidx int32   (contiguous 0..n-1)
        movies.parquet       movie_id string, iidx int32 (contiguous 0..m-1)
        seen.parquet         uidx int32, iidx int32: every interaction up to the data end
        fallback.json        {"items": [up to 20 slugs]}: recent global popularity, for unknown users
        params.json          Spark + ALS parameters, split time T, data window
        data_manifest.json   the Parquet files read (path, sha256, rows) and their Kafka offset range
        metrics.json         offline metrics of the chosen model; "recall_at_20" at top level
        model.json           {version, created_at, git_commit, model: "als"|"popularity", split_time}
        prepared/            learning's own intermediate data (train/test interactions, user groups)
        candidates/<name>/   every model compared (fitted before T, and refitted on all data)
    $MOVIEREC_HOME/reports/<version>/report.md, report.json

A version id is the UTC time the retrain started, ``YYYYMMDDTHHMMSSZ``: sortable as text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from movierec.settings import Settings

VERSION_FORMAT = "%Y%m%dT%H%M%SZ"
_VERSION_RE = re.compile(r"^\d{8}T\d{6}Z$")

ALS_DIR = "als"
USERS_FILE = "users.parquet"
MOVIES_FILE = "movies.parquet"
SEEN_FILE = "seen.parquet"
FALLBACK_FILE = "fallback.json"
PARAMS_FILE = "params.json"
DATA_MANIFEST_FILE = "data_manifest.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.json"
PREPARED_DIR = "prepared"
CANDIDATES_DIR = "candidates"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"


class VersionError(ValueError):
    """Not a version id, or a version whose folder does not exist."""


def new_version_id(now: datetime | None = None) -> str:
    """The version id of a retrain started at ``now`` (default: the current UTC time)."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(VERSION_FORMAT)


def check_version(version: str) -> str:
    """``version`` if it is a well-formed id; a clear error otherwise (it becomes part of paths)."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise VersionError(f"{version!r} is not a version id (expected UTC time like 20261128T101502Z)")
    datetime.strptime(version, VERSION_FORMAT)  # also rejects month 13 and the like
    return version


def version_time(version: str) -> datetime:
    return datetime.strptime(check_version(version), VERSION_FORMAT).replace(tzinfo=UTC)


def model_dir(settings: Settings, version: str) -> Path:
    return settings.models_dir / check_version(version)


def report_dir(settings: Settings, version: str) -> Path:
    return settings.reports_dir / check_version(version)


def prepared_dir(settings: Settings, version: str) -> Path:
    return model_dir(settings, version) / PREPARED_DIR


def candidate_dir(settings: Settings, version: str, name: str) -> Path:
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise VersionError(f"{name!r} is not a candidate model name (lowercase letters, digits, _)")
    return model_dir(settings, version) / CANDIDATES_DIR / name


def list_versions(settings: Settings) -> list[str]:
    """Every version that has a model folder, oldest first."""
    folder = settings.models_dir
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _VERSION_RE.match(p.name))
