"""Run a job of ``spark_jobs/`` through ``spark-submit`` on the configured master; its log to a file.

    .venv/bin/spark-submit --master <settings.spark_master> --driver-memory <...> spark_jobs/<job>.py ARGS

The job's whole output (Spark's own lines too) goes to
``$MOVIEREC_HOME/logs/spark/<job>-<version or time>.log``; the job's progress lines (from the
``movierec.*`` loggers) are echoed to our log as they come, so an Airflow task log shows the
progress and the file keeps the details. A job ends by printing one ``RESULT {json}`` line (or,
failing that, a last line that is a JSON object): that is what ``submit`` returns. A failing
job raises ``SparkJobFailed`` with the log's tail.

The driver's JVM maps the classes it loads from a class data sharing archive when the install made
one (``build_class_archive``, run by ``make install``): a job's start then costs ~3 s and ~5 CPU s
less (``bench/bench_spark_classes.py``). Without the archive, or with one this JVM or these jars
reject, the JVM loads its classes as usual.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from movierec.settings import REPO_ROOT, Settings, child_env

log = logging.getLogger(__name__)

RESULT_PREFIX = "RESULT "
JOBS_DIR = REPO_ROOT / "spark_jobs"
PROGRESS_MARK = " movierec."  # our jobs' logger names; Spark's own lines stay in the file
# The throughput collector for these batch JVMs (driver and executors) instead of the JVM's default
# G1: on make up's lake (bench/bench_spark_gc.py, 2 rounds) prepare took 0.90x the wall and 0.89x
# the CPU, precompute 0.94x / 0.89x, train 0.97x, evaluate 1.04x (11 s): ~9 s less per retrain.
# Pauses do not matter to a batch job nobody waits on per request.
JAVA_OPTIONS = "-XX:+UseParallelGC"
# Spark's classes as the driver JVM loads them, archived once per install (JDK 17's dynamic class
# data sharing): beside the venv's python, since it is only valid for the jars that venv holds.
CLASS_ARCHIVE = Path(sys.prefix) / "spark-classes.jsa"


class SparkJobFailed(RuntimeError):
    """A spark-submit job exited with an error (or printed no result)."""


def print_result(result: dict[str, Any]) -> None:
    """The last thing a job prints: its report, one JSON line for ``submit`` to return."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def spark_submit_binary() -> Path:
    return Path(sys.executable).with_name("spark-submit")


def driver_options(java_options: str = JAVA_OPTIONS, archive: Path = CLASS_ARCHIVE) -> str:
    """The driver JVM's options: ``java_options``, and the class archive if the install made one.
    (Executors of a cluster are other JVMs with another class path, which the archive would not fit.)"""
    return f"{java_options} -XX:SharedArchiveFile={archive}" if archive.is_file() else java_options


def command(
    settings: Settings,
    job: str,
    args: list[str],
    java_options: str = JAVA_OPTIONS,
    *,
    archive: Path = CLASS_ARCHIVE,
) -> list[str]:
    script = JOBS_DIR / f"{job}.py"
    if not script.is_file():
        known = sorted(p.stem for p in JOBS_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise SparkJobFailed(f"no Spark job {job!r} (spark_jobs/ has: {', '.join(known)})")
    return [
        str(spark_submit_binary()),
        "--master",
        settings.spark_master,
        "--driver-memory",
        settings.spark_driver_memory,
        "--executor-memory",
        settings.spark_executor_memory,
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        f"spark.driver.extraJavaOptions={driver_options(java_options, archive)}",
        "--conf",
        f"spark.executor.extraJavaOptions={java_options}",
        "--conf",
        f"spark.pyspark.python={sys.executable}",
        str(script),
        *args,
    ]


def log_path(settings: Settings, job: str, tag: str) -> Path:
    return settings.log_dir / "spark" / f"{job}-{tag}.log"


def submit(
    settings: Settings,
    job: str,
    args: list[str],
    *,
    tag: str | None = None,
    java_options: str = JAVA_OPTIONS,
    archive: Path = CLASS_ARCHIVE,
) -> dict[str, Any]:
    """Run ``spark_jobs/<job>.py ARGS`` under spark-submit; the job's RESULT (with ``log`` added).
    ``java_options``: the JVMs' options, ``archive``: the driver's class archive, used if it
    exists (a bench compares others)."""
    cmd = command(settings, job, args, java_options, archive=archive)
    path = log_path(settings, job, tag or time.strftime("%Y%m%dT%H%M%S"))
    path.parent.mkdir(parents=True, exist_ok=True)
    env = child_env(settings) | {"PYTHONPATH": str(REPO_ROOT), "PYSPARK_PYTHON": sys.executable}
    log.info("spark job %s on %s, log %s", job, settings.spark_master, path)
    began = time.monotonic()
    tail: deque[str] = deque(maxlen=40)
    result: dict[str, Any] | None = None
    with open(path, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        process = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            out.flush()
            tail.append(line.rstrip())
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
            elif line.startswith("{") and (last := _json_object(line)) is not None:
                result = result if result is not None and "_plain" not in result else last | {"_plain": True}
            elif PROGRESS_MARK in line:
                log.info("%s| %s", job, line.rstrip())
        code, peak_mb = _wait_with_peak_memory(process)
    seconds = time.monotonic() - began
    if code != 0 or result is None:
        why = f"exit code {code}" if code != 0 else "no RESULT line"
        raise SparkJobFailed(
            f"spark job {job} failed ({why}) after {seconds:.0f} s; log {path}; last lines:\n"
            + "\n".join(tail)
        )
    log.info("spark job %s done in %.0f s, peak memory %.0f MB", job, seconds, peak_mb)
    result.pop("_plain", None)
    return result | {"log": str(path), "submit_seconds": round(seconds, 1), "peak_rss_mb": peak_mb}


def java_binary() -> str:
    """The java that spark-submit starts: ``$JAVA_HOME/bin/java``, else the one on PATH (as spark-class)."""
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def check_class_archive(archive: Path) -> None:
    """Raise ``SparkJobFailed`` unless a JVM starts with ``archive`` mapped (~0.1 s). A cut-short
    archive crashes the JVM (SIGBUS); one made for other jars or another JDK is only set aside."""
    check = subprocess.run(
        # a crash here is the answer: no hs_err file or core dump left behind
        [
            java_binary(),
            f"-XX:SharedArchiveFile={archive}",
            "-XX:ErrorFile=/dev/null",
            "-XX:-CreateCoredumpOnCrash",
            "-version",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if check.returncode != 0:
        lines = check.stdout.decode(errors="replace").splitlines()
        why = f"java exited {check.returncode}: " + " / ".join(line for line in lines[:6] if line.strip("# "))
        raise SparkJobFailed(f"the class archive {archive} does not map ({why})")


def build_class_archive(settings: Settings, archive: Path = CLASS_ARCHIVE) -> dict[str, Any]:
    """Run the ``class_archive`` job with the JVM told to archive the classes it loaded, check the
    archive maps, then move it into place (a JVM crashes on a cut-short archive, so only a whole,
    checked one is ever at ``archive``). Replaces an older archive; its report, with the size."""
    partial = archive.with_name(f"{archive.name}.partial-{os.getpid()}")
    scratch = settings.home / "spark-local" / f"class-archive-{os.getpid()}"
    partial.unlink(missing_ok=True)
    try:
        result = submit(
            settings,
            "class_archive",
            ["--scratch", str(scratch)],
            tag="install",
            java_options=f"{JAVA_OPTIONS} -XX:ArchiveClassesAtExit={partial}",
            archive=partial,  # not there yet: the JVM that dumps runs without one
        )
        if not partial.is_file():
            raise SparkJobFailed(f"the JVM wrote no class archive at {partial}; see {result['log']}")
        check_class_archive(partial)
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)
    return result | {"archive": str(archive), "archive_mb": round(archive.stat().st_size / 1e6, 1)}


def _wait_with_peak_memory(process: subprocess.Popen[str]) -> tuple[int, float]:
    """Exit code and peak resident memory (MB) of the job: the kernel's max RSS over the process
    spark-submit became and the descendants it waited for (the JVM, driver and executors at once
    in local mode, and the job's Python driver), i.e. the largest of them, not their sum."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, round(usage.ru_maxrss / 1024, 1)  # Linux: ru_maxrss is in KiB


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
