"""DAG ``retrain``: every 3 days and on demand, prepare -> train -> evaluate -> precompute ->
precompute_challenger -> publish.

Wiring only: each task loads the settings and calls one importable function (the Spark jobs
through ``movierec.ops.spark_submit``, so they run on whatever master the settings name). The
version id derives from the run (``versions.run_version``: its data interval's end, or when a
manual run was triggered for), so a retried or cleared run works on its own version again and
replaces it (``prepare`` starts it afresh) instead of leaving an orphan folder; ``prepare``
passes it along as an XCom. Each task writes its own files: prepare the model folder's data,
train the candidates, evaluate the choice and the report, precompute the serving file and its
figures, publish it. The trigger form takes rank, reg, alpha and iterations (empty:
the settings' values) and ``force_publish``. A model the quality gate refuses fails ``publish``
(the run is red, the current model keeps serving).
Once a model serves, ``publish`` sends a new one out as a canary experiment instead
(experiments.lifecycle.publish_or_canary), and the ``experiments`` DAG promotes or rolls it back
from the experiment's verdict. The canary tests the challenger evaluate named (the best candidate
on test watches no shown list started, which exposure cannot earn); when that is not the chosen
candidate, ``precompute_challenger`` writes its own serving file first, and a first model's
``publish`` sends it out as a canary against the model it just published.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from movierec.ops.dag_wiring import SCHEDULING


@dag(
    dag_id="retrain",
    description="learn from the lake: prepare, train candidates, evaluate and choose, precompute, publish",
    schedule=timedelta(days=3),
    **SCHEDULING,
    params={
        "rank": Param(None, type=["null", "integer"], minimum=1, description="ALS rank (empty: settings)"),
        "reg": Param(None, type=["null", "number"], minimum=0, description="ALS regParam (empty: settings)"),
        "alpha": Param(None, type=["null", "number"], exclusiveMinimum=0, description="ALS alpha"),
        "iterations": Param(None, type=["null", "integer"], minimum=1, description="ALS maxIter"),
        "force_publish": Param(False, type="boolean", description="publish even if the gate refuses"),
    },
    default_args={
        "retries": 1,  # a job is rerun whole and replaces what it wrote
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

        context = get_current_context()
        version = versions.run_version(context.get("data_interval_end"), context["dag_run"].run_after)
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
        return spark_submit.submit(settings.load(), "train", args, tag=version)

    @task
    def evaluate(version: str) -> dict[str, Any]:
        from movierec import settings
        from movierec.ops import spark_submit

        return spark_submit.submit(settings.load(), "evaluate", ["--version", version], tag=version)

    @task
    def precompute(version: str) -> dict[str, Any]:
        from movierec import settings
        from movierec.ops import spark_submit

        return spark_submit.submit(settings.load(), "precompute", ["--version", version], tag=version)

    @task
    def precompute_challenger(version: str) -> dict[str, Any] | None:
        from experiments import lifecycle
        from movierec import serving_file, settings
        from movierec.ops import spark_submit

        # the canary's own serving file, when evaluate named a challenger other than the chosen one
        loaded = settings.load()
        candidate = lifecycle.canary_candidate(loaded, version)
        if candidate is None:
            return None
        args = ["--version", version, "--candidate", candidate]
        # a log of its own, named by its serving id: the chosen one's precompute-<version>.log stays
        tag = serving_file.serving_id(version, candidate)
        return spark_submit.submit(loaded, "precompute", args, tag=tag)

    @task(retries=0)  # a refusal is the gate's answer, not a transient error
    def publish(version: str) -> str:
        from experiments import lifecycle
        from movierec import settings

        # the first model is published behind the offline gate (its challenger, if another candidate,
        # then goes out as a canary against it); later ones go out as a canary experiment against
        # the current model, promoted or rolled back by the experiments DAG
        force = bool(get_current_context()["params"].get("force_publish"))
        return lifecycle.publish_or_canary(settings.load(), version, force=force)

    version = prepare()
    trained = train(version)
    evaluated = evaluate(version)
    computed = precompute(version)
    challenger = precompute_challenger(version)
    trained >> evaluated >> computed >> challenger >> publish(version)


retrain()
