"""DAG ``retrain``: every 3 days and on demand, prepare -> train -> evaluate -> precompute -> publish.

Wiring only: each task loads the settings and calls one importable function (the Spark jobs
through ``movierec.ops.spark_submit``, so they run on whatever master the settings name). The
version id is made by ``prepare`` and passed along as an XCom. The trigger form takes rank,
reg, alpha and iterations (empty: the settings' values) and ``force_publish``. ``publish`` publishes
the first model (a model the quality gate refuses fails it: the run is red); once a model serves, a
new one goes out as a canary experiment instead (experiments.lifecycle.publish_or_canary), and the
``experiments`` DAG promotes or rolls it back from the experiment's verdict.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task


@dag(
    dag_id="retrain",
    description="learn from the lake: prepare, train ALS, evaluate and compare, precompute top-20, publish",
    schedule=timedelta(days=3),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "rank": Param(None, type=["null", "integer"], minimum=1, description="ALS rank (empty: settings)"),
        "reg": Param(None, type=["null", "number"], minimum=0, description="ALS regParam (empty: settings)"),
        "alpha": Param(None, type=["null", "number"], exclusiveMinimum=0, description="ALS alpha"),
        "iterations": Param(None, type=["null", "integer"], minimum=1, description="ALS maxIter"),
        "force_publish": Param(False, type="boolean", description="publish even if the gate refuses"),
    },
    default_args={
        "retries": 1,  # a job is rerun whole on its version folder
        "retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(hours=3),
    },
    tags=["movierec", "learning"],
)
def retrain() -> None:
    @task
    def prepare() -> str:
        from movierec import settings
        from movierec.models import versions
        from movierec.ops import spark_submit

        version = versions.new_version_id()
        spark_submit.submit(settings.load(), "prepare", ["--version", version], tag=version)
        return version

    @task
    def train(version: str) -> dict[str, Any]:
        from movierec import settings
        from movierec.ops import spark_submit

        params = get_current_context()["params"]
        args = ["--version", version]
        for name in ("rank", "reg", "alpha", "iterations"):
            if params.get(name) is not None:
                args += [f"--{name}", str(params[name])]
        return spark_submit.submit(settings.load(), "train_als", args, tag=version)

    @task
    def evaluate(version: str) -> dict[str, Any]:
        from movierec import settings
        from movierec.ops import spark_submit

        return spark_submit.submit(settings.load(), "evaluate", ["--version", version], tag=version)

    @task
    def precompute(version: str) -> dict[str, Any]:
        from movierec import settings
        from movierec.ops import spark_submit
        from spark_jobs import compare

        loaded = settings.load()
        report = spark_submit.submit(loaded, "precompute", ["--version", version], tag=version)
        return report | {"serving": compare.add_serving_figures(loaded, version)}

    @task(retries=0)  # a refusal is the gate's answer, not a transient error
    def publish(version: str) -> str:
        from experiments import lifecycle
        from movierec import settings

        # the first model is published behind the offline gate; later ones go out as a canary
        # experiment against the current model, promoted or rolled back by the experiments DAG
        force = bool(get_current_context()["params"].get("force_publish"))
        return lifecycle.publish_or_canary(settings.load(), version, force=force)

    version = prepare()
    trained = train(version)
    evaluated = evaluate(version)
    computed = precompute(version)
    trained >> evaluated >> computed >> publish(version)


retrain()
