"""The Spark driver's class archive (``spark_submit.build_class_archive``, run by ``make install``):
made by a real JVM, checked before it is put in place, loaded by the jobs' driver, and harmless
when it does not fit. Real Spark and real JVMs throughout."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from movierec.ops import spark_submit
from tests.learning_data import learning_settings

# ``class_archive``'s made-up frame: uidx = id % 300, iidx = 7 id % 80 for id < 6,000
TOUR_PAIRS = len({(i % 300, (7 * i) % 80) for i in range(6_000)})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("class-archive")
    archive = home / "classes.jsa"
    return archive, spark_submit.build_class_archive(learning_settings(home), archive)


def loaded_from(log: Path) -> dict[str, str]:
    """Class name -> its source, from a JVM's ``-Xlog:class+load`` file."""
    found = re.findall(r"\] (\S+) source: (.+)$", log.read_text(), re.MULTILINE)
    return dict(found)


def test_the_archive_is_made_by_the_tour_and_put_in_place_whole(built: tuple[Path, dict]) -> None:
    archive, report = built
    assert (report["rows"], report["quiet"], report["users_scored"], report["items"]) == (
        TOUR_PAIRS,
        50,
        300,
        80,
    )
    assert archive.is_file() and report["archive_mb"] > 50  # Spark's classes, not an empty archive
    assert [p.name for p in archive.parent.glob("classes.jsa*")] == ["classes.jsa"]  # no partial left
    assert not any(archive.parent.glob("spark-local/class-archive-*"))  # the tour's scratch removed
    spark_submit.check_class_archive(archive)


def test_a_job_driver_loads_spark_from_the_archive(built: tuple[Path, dict], tmp_path: Path) -> None:
    archive, _ = built
    settings = learning_settings(tmp_path)
    log = tmp_path / "classes.log"
    options = f"{spark_submit.JAVA_OPTIONS} -Xlog:class+load=info:file={log}"
    spark_submit.submit(
        settings, "class_archive", ["--scratch", str(tmp_path / "s")], java_options=options, archive=archive
    )
    sources = loaded_from(log)
    # Spark's own classes and the ALS the retrain fits came from the archive, not from the jars
    for name in ("org.apache.spark.sql.SparkSession", "org.apache.spark.ml.recommendation.ALS"):
        assert sources[name] == "shared objects file (top)", (name, sources.get(name))
    from_archive = sum(source == "shared objects file (top)" for source in sources.values())
    assert from_archive > 5_000


def test_without_an_archive_the_driver_gets_the_plain_options(tmp_path: Path) -> None:
    settings = learning_settings(tmp_path)
    missing = tmp_path / "none.jsa"
    assert spark_submit.driver_options(archive=missing) == spark_submit.JAVA_OPTIONS
    archive = tmp_path / "there.jsa"
    archive.write_bytes(b"x")
    cmd = spark_submit.command(settings, "prepare", ["--version", "20261201T000000Z"], archive=archive)
    confs = dict(cmd[i + 1].split("=", 1) for i, part in enumerate(cmd) if part == "--conf")
    assert confs["spark.driver.extraJavaOptions"].split() == [
        "-XX:+UseParallelGC",
        f"-XX:SharedArchiveFile={archive}",
    ]
    # a cluster's executors are other JVMs with another class path: no archive for them
    assert confs["spark.executor.extraJavaOptions"] == "-XX:+UseParallelGC"


def test_a_cut_short_archive_is_refused_before_it_is_used(built: tuple[Path, dict], tmp_path: Path) -> None:
    archive, _ = built
    cut = tmp_path / "cut.jsa"
    with open(archive, "rb") as whole, open(cut, "wb") as part:
        part.write(whole.read(archive.stat().st_size // 4))
    with pytest.raises(spark_submit.SparkJobFailed, match="does not map"):
        spark_submit.check_class_archive(cut)
    assert not list(tmp_path.glob("hs_err*")) and not list(Path.cwd().glob("hs_err*"))


def test_an_archive_made_for_other_jars_only_leaves_the_job_slower(tmp_path: Path) -> None:
    """An archive from another class path (say, the venv moved) is set aside by the JVM, with a
    warning in the job's log, and the job runs as it would without one."""
    other = tmp_path / "other-classes"  # a class path of one jar of its own, archived
    other.mkdir()
    (other / "Hello.java").write_text("class Hello { public static void main(String[] a) { } }")
    subprocess.run(["javac", str(other / "Hello.java")], check=True)
    jar = tmp_path / "hello.jar"
    subprocess.run(["jar", "cf", str(jar), "-C", str(other), "Hello.class"], check=True)
    stale = tmp_path / "stale.jsa"
    java = spark_submit.java_binary()
    subprocess.run([java, f"-XX:ArchiveClassesAtExit={stale}", "-cp", str(jar), "Hello"], check=True)
    spark_submit.check_class_archive(stale)  # a whole archive: it maps, for its own class path
    settings = learning_settings(tmp_path)
    report = spark_submit.submit(settings, "class_archive", ["--scratch", str(tmp_path / "s")], archive=stale)
    assert report["rows"] == TOUR_PAIRS
    assert "Unable to use shared archive" in Path(report["log"]).read_text()


def test_make_install_builds_the_archive_the_jobs_use() -> None:
    """The Makefile's install makes the archive at the path the jobs look for, after the venv."""
    rules = (spark_submit.REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^install: .*\$\(CLASS_ARCHIVE\)", rules, re.MULTILINE)
    assert "CLASS_ARCHIVE := $(VENV)/spark-classes.jsa" in rules
    assert spark_submit.CLASS_ARCHIVE.name == "spark-classes.jsa"
    assert re.search(
        r"^\$\(CLASS_ARCHIVE\): \$\(INSTALLED\).*\n\t.*movierec spark classes", rules, re.MULTILINE
    )
    if Path(sys.prefix) == spark_submit.REPO_ROOT / ".venv":  # make test: make install ran first
        spark_submit.check_class_archive(spark_submit.CLASS_ARCHIVE)
