"""The online metric against the simulator's truth, on the real path, at small scale.

Three serving files of known quality (a random 20, the popularity top-20, each user's true top-20)
are served side by side through ``movierec serve`` and an experiment started with
``experiments.lifecycle`` (the service's hook); live viewers of the simulator call the service and
write the movielog to the real broker; ingest reads it; the ``online_metrics`` DAG, run by Airflow,
ingests our served records and computes the outcomes and metrics; the experiment's analysis must
order the three lists as the truth does on the minutes watched from the lists
(simulator.online_check; bench/bench_online_truth.py runs the same at a larger scale).
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from experiments import control
from movierec import settings as settings_module
from movierec.ingest import consume
from movierec.online import compute
from movierec.ops import airflow_ops
from simulator import online_check
from tests.conftest import free_port
from tests.test_simulator_catalog import small_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
_runs = itertools.count()


@pytest.fixture
def site(kafka: settings_module.Settings, tmp_path: Path) -> settings_module.Settings:
    number = next(_runs)
    base = small_settings(tmp_path)
    return replace(
        base,
        kafka_bootstrap=kafka.kafka_bootstrap,
        topic=f"online.live.{number}",
        served_topic=f"online.served.{number}",
        server_port=free_port(),
        server_workers=2,
        online_window_minutes=0.1,  # 30 simulated minutes are 0.3 s at 0.01 s a minute: 6 s is ample
    )


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")  # inside dag.test()
def test_the_online_metric_ranks_lists_as_the_truth_does(
    site: settings_module.Settings, dagbag: Any, airflow_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, viewers = online_check.live_phase(site, sessions=1_200, minute_seconds=0.01, lines_per_second=500)
    assert viewers["reco_ok"] >= 1_200
    assert control.in_force(site) == name  # the hook still holds the experiment

    while consume.ingest_batch(site)["batch_id"] is not None:
        pass
    for key, value in airflow_ops.movierec_env(site).items():
        monkeypatch.setenv(key, value)  # the tasks load these settings, as under the scheduler
    run = dagbag.dags["online_metrics"].test()
    assert run.state == "success"

    check = online_check.conclude(site, name, viewers)
    by_variant = {row["variant"]: row for row in check.table}
    assert sum(row["users"] for row in check.table) >= 400  # 900 answers: heavy users come back
    assert check.counts["srm_p"] > 0.001  # the salt split the users as configured
    fit = {name: row["truth_list_fit"] for name, row in by_variant.items()}
    assert fit["random"] < fit["popularity"] < fit["truth"]  # the harness serves what it claims
    # minutes watched of the listed movies, per answer: the experiments' primary metric
    assert check.ordered_as_truth["list_minutes_per_answer"], check.table
    gap = next(
        g for g in check.gaps if g["pair"] == "truth - random" and g["metric"] == "list_minutes_per_answer"
    )
    assert gap["interval"][0] > 0  # the gap is not noise at this size
    # starts of listed movies alone put the random list last, but not popularity below the truth: a
    # browsing viewer starts popular movies anyway (docs/online_metrics.md, "what the check showed")
    follow = {name: row["follow_rate"] for name, row in by_variant.items()}
    assert follow["random"] < min(follow["popularity"], follow["truth"])

    metrics = compute.read_metrics(site).to_pylist()
    versions = {r["model_version"] for r in metrics if r["scope"] == "version" and r["granularity"] == "day"}
    assert set(online_check.POLICIES.values()) <= versions
    prom = compute.prom_path(site).read_text()
    assert f'model_version="{online_check.POLICIES["truth"]}",variant="truth"' in prom
    page = Path(check.report)
    assert (
        page.exists() and (page.parent / "metric.png").exists() and (page.parent / "assignment.png").exists()
    )
    assert control.in_force(site) is None
