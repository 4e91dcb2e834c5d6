"""Every kind of answer of the service, through sanic-testing (a real Sanic server per request).

The provenance producer talks to the session's real broker; the answers and the
metrics here are those of one process (the multi-worker service is in
test_server_live.py).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sanic import Sanic

from movierec import settings as settings_module
from server.app import create_app
from tests.test_server_store import (
    FALLBACK,
    V1,
    V2,
    items_of,
    point_current,
    write_experiment,
    write_serving_file,
)

pytestmark = pytest.mark.kafka


def app_for(home: Path, kafka: settings_module.Settings, **extra: str) -> Sanic:
    return create_app(
        settings_module.load(
            {
                "MOVIEREC_HOME": str(home),
                "MOVIEREC_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
                "MOVIEREC_SERVED_TOPIC": kafka.served_topic,
                **extra,
            }
        )
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, kafka: settings_module.Settings) -> Sanic:
    home = tmp_path_factory.mktemp("server-app")
    write_serving_file(home / "serving", V1)
    point_current(home / "serving", V1)
    return app_for(home, kafka)


def metric(app: Sanic, name: str, **labels: str) -> float:
    """From the app's own registry: /metrics is on the operator port (test_server_live.py)."""
    total = 0.0
    for family in text_string_to_metric_families(app.ctx.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_a_known_user_gets_their_list(app: Sanic) -> None:
    _, response = app.test_client.get("/recommend/42")
    assert response.status == 200
    assert response.content_type.startswith("text/plain")
    assert response.text == items_of(42, V1)
    assert response.headers["x-model-version"] == V1
    assert len(response.headers["x-request-id"]) == 32
    assert "x-fallback" not in response.headers


def test_an_unknown_user_gets_the_fallback(app: Sanic) -> None:
    _, response = app.test_client.get("/recommend/100000")
    assert (response.status, response.text, response.headers["x-fallback"]) == (200, FALLBACK, "1")


def test_a_percent_encoded_id_is_the_id(app: Sanic) -> None:
    _, response = app.test_client.get("/recommend/%34%32")
    assert (response.status, response.text) == (200, items_of(42, V1))


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/recommend/abc", "decimal digits"),
        ("/recommend/-5", "no sign"),
        ("/recommend/+5", "no sign"),
        ("/recommend/%2B5", "no sign"),
        ("/recommend/0", "positive"),
        ("/recommend/007", "leading zeros"),
        ("/recommend/9223372036854775808", "above 9223372036854775807"),
        ("/recommend/" + "9" * 20, "too long"),
        ("/recommend/" + "1" * 5000, "too long"),
        ("/recommend/", "empty user id"),
        ("/recommend", "empty user id"),
        ("/recommend/%ff%00", "decimal digits"),
        ("/recommend/%0A1", "decimal digits"),
        ("/recommend/%D9%A3", "decimal digits"),  # ARABIC-INDIC DIGIT THREE: a digit, not an ASCII one
        ("/recommend/１２", "decimal digits"),  # fullwidth digits  # noqa: RUF001
        ("/recommend/1.0", "decimal digits"),
        ("/recommend/1/2", "decimal digits"),
        ("/recommend/%20%201", "decimal digits"),
    ],
)
def test_a_malformed_id_gets_400_with_one_line_reason(app: Sanic, path: str, reason: str) -> None:
    _, response = app.test_client.get(path)
    assert response.status == 400
    assert reason in response.text
    assert "\n" not in response.text and len(response.text) < 200


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=st.text(min_size=0, max_size=60))
def test_no_input_causes_a_server_error(app: Sanic, segment: str) -> None:
    # arbitrary text, percent-encoded except for characters a client may send raw in a path
    _, response = app.test_client.get("/recommend/" + quote(segment, safe="+-._~!$&'()*,;=:@%"))
    assert response.status < 500, response.text
    if response.status == 200:
        assert segment.isascii() or "%" in segment
    else:
        assert response.status in (400, 404) and "\n" not in response.text


def test_healthz_names_the_model_its_age_and_file(app: Sanic) -> None:
    _, response = app.test_client.get("/healthz")
    body = response.json
    assert response.status == 200 and body["status"] == "ok"
    assert body["model_version"] == V1
    assert body["file"].endswith(f"recs-{V1}.sqlite") and body["users"] == 100
    assert body["age_seconds"] > 0


def test_metrics_count_answers_by_status_fallbacks_and_latency(app: Sanic) -> None:
    before = {
        "ok": metric(app, "movierec_recommend_requests_total", status="200"),
        "bad": metric(app, "movierec_recommend_requests_total", status="400"),
        "fallback": metric(app, "movierec_fallback_answers_total"),
        "observed": metric(app, "movierec_recommend_latency_seconds_count"),
    }
    for path in ("/recommend/1", "/recommend/2", "/recommend/100001", "/recommend/x"):
        app.test_client.get(path)
    assert metric(app, "movierec_recommend_requests_total", status="200") == before["ok"] + 3
    assert metric(app, "movierec_recommend_requests_total", status="400") == before["bad"] + 1
    assert metric(app, "movierec_fallback_answers_total") == before["fallback"] + 1
    assert metric(app, "movierec_recommend_latency_seconds_count") == before["observed"] + 4
    assert metric(app, "movierec_model_info", version=V1, variant="none") == 1


def test_without_a_serving_file_the_answer_is_503_with_a_reason(
    tmp_path: Path, kafka: settings_module.Settings
) -> None:
    bare = app_for(tmp_path, kafka)
    _, response = bare.test_client.get("/recommend/1")
    assert response.status == 503 and "no model to answer from" in response.text
    _, health = bare.test_client.get("/healthz")
    assert health.status == 503 and "does not exist" in health.json["reason"]
    _, bad = bare.test_client.get("/recommend/x")
    assert bad.status == 400, "a malformed id is still the client's error"


def test_a_variant_answers_from_its_own_file(tmp_path: Path, kafka: settings_module.Settings) -> None:
    serving = tmp_path / "serving"
    write_serving_file(serving, V1)
    write_serving_file(serving, V2)
    point_current(serving, V1)
    write_experiment(tmp_path, V2, name="e", salt="s")
    app = app_for(tmp_path, kafka)
    from server.experiment import parse_experiment

    experiment = parse_experiment((tmp_path / "experiments" / "current.json").read_text())
    for user in range(1, 11):
        _, response = app.test_client.get(f"/recommend/{user}")
        expected = V2 if experiment.assign(user).name == "treatment" else V1
        assert response.text == items_of(user, expected)
    assert metric(app, "movierec_model_info", version=V2, variant="treatment") == 1
    assert metric(app, "movierec_model_info", version=V1, variant="control") == 1


def test_metrics_are_not_served_on_the_public_port(app: Sanic) -> None:
    _, response = app.test_client.get("/metrics")
    assert response.status == 404
    assert "movierec_" not in response.text


# --- the per-client rate limit ----------------------------------------------------------------
# sanic-testing's client connects from 127.0.0.1; a site list without it makes it "another client".
SLOW = {  # one worker, 3 requests at once, then 1 per 1000 s
    "MOVIEREC_SERVER_WORKERS": "1",
    "MOVIEREC_SERVER_CLIENT_RATE": "0.001",
    "MOVIEREC_SERVER_CLIENT_BURST": "3",
}


@pytest.fixture()
def served_home(tmp_path: Path) -> Path:
    write_serving_file(tmp_path / "serving", V1)
    point_current(tmp_path / "serving", V1)
    return tmp_path


def test_another_client_past_its_burst_gets_429_with_retry_after(
    served_home: Path, kafka: settings_module.Settings
) -> None:
    app = app_for(served_home, kafka, MOVIEREC_SERVER_SITE_CLIENTS="192.0.2.1", **SLOW)
    responses = [app.test_client.get(f"/recommend/{user}")[1] for user in range(1, 8)]
    assert [r.status for r in responses] == [200, 200, 200, 429, 429, 429, 429]
    refused = responses[-1]
    assert int(refused.headers["retry-after"]) >= 900  # a token comes back every 1000 s
    assert refused.text.startswith("too many requests") and "\n" not in refused.text.strip()
    assert metric(app, "movierec_throttled_requests_total") == 4
    assert metric(app, "movierec_recommend_requests_total", status="200") == 3, "a 429 is no answer"
    _, health = app.test_client.get("/healthz")
    assert health.status == 200, "only /recommend is limited"


def test_the_site_client_is_never_limited(served_home: Path, kafka: settings_module.Settings) -> None:
    app = app_for(served_home, kafka, MOVIEREC_SERVER_SITE_CLIENTS="10.0.0.0/8, 127.0.0.0/8", **SLOW)
    statuses = {app.test_client.get(f"/recommend/{user}")[1].status for user in range(1, 11)}
    assert statuses == {200}
    assert metric(app, "movierec_throttled_requests_total") == 0


def test_a_forwarded_for_header_counts_only_from_a_trusted_proxy(
    served_home: Path, kafka: settings_module.Settings
) -> None:
    site = {"MOVIEREC_SERVER_SITE_CLIENTS": "203.0.113.7", **SLOW}
    spoofed = {"X-Forwarded-For": "203.0.113.7"}
    direct = app_for(served_home, kafka, **site)  # no proxy in front: the header is the client's word
    users = range(1, 7)
    assert 429 in {direct.test_client.get(f"/recommend/{u}", headers=spoofed)[1].status for u in users}
    proxied = app_for(served_home, kafka, MOVIEREC_SERVER_PROXIES="1", **site)
    assert {proxied.test_client.get(f"/recommend/{u}", headers=spoofed)[1].status for u in users} == {200}
