"""The per-answer encodings of the service: the served record's JSON and the tallied metrics.

The record is built without a dict and the metrics are counted in process, both for speed
(bench/bench_serving.py); here each is checked against what the json module and
prometheus_client themselves make of the same answers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import LATENCY_BUCKETS, ServerMetrics
from server.provenance import AnswerTime, answer_record

texts = st.text(max_size=30)
optional_texts = st.none() | texts
plain = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7F), max_size=80)  # the usual lines
lines = st.none() | st.binary(max_size=80) | plain.map(str.encode) | st.text(max_size=40).map(str.encode)


@given(
    request_id=texts | st.binary(min_size=16, max_size=16).map(bytes.hex),
    user_id=st.none() | st.integers(1, 2**63 - 1),
    variant=optional_texts,
    version=optional_texts,
    items=lines,
    fallback=st.booleans(),
    latency=st.floats(0, 5, allow_nan=False),
    status=st.sampled_from([200, 400, 503]),
    client=texts | st.sampled_from(["127.0.0.1", "::1", "10.0.0.7"]),
    reason=texts,
)
def test_the_record_is_the_json_of_its_fields_in_order(
    request_id: str,
    user_id: int | None,
    variant: str | None,
    version: str | None,
    items: bytes | None,
    fallback: bool,
    latency: float,
    status: int,
    client: str,
    reason: str,
) -> None:
    latency_ms = round(latency * 1000, 3)
    time_text = "2026-11-28T04:00:00.123+00:00"
    expected = {
        "request_id": request_id,
        "time": time_text,
        "user_id": user_id,
        "variant": variant,
        "model_version": version,
        "items": None if items is None else items.decode(errors="replace"),
        "fallback": fallback,
        "latency_ms": latency_ms,
        "status": status,
        "client": client,
    }
    if reason:
        expected["reason"] = reason
    encoded = answer_record(
        request_id, time_text, user_id, variant, version, items, fallback, latency_ms, status, client, reason
    )
    assert encoded == json.dumps(expected, separators=(",", ":"), ensure_ascii=False).encode()
    assert list(json.loads(encoded)) == list(expected)


@given(st.lists(st.floats(0, 4e9, allow_nan=False), min_size=1, max_size=20))
def test_the_answer_time_is_isoformat_in_utc_to_the_millisecond(moments: list[float]) -> None:
    clock = AnswerTime()  # one clock over many moments: its cached second must never go stale
    for now in sorted(moments) + moments:
        millis = int(now * 1000)
        moment = datetime.fromtimestamp(millis // 1000, UTC).replace(microsecond=millis % 1000 * 1000)
        assert clock.format(now) == moment.isoformat(timespec="milliseconds")


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        if family.name == name:
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


@given(st.lists(st.sampled_from([*LATENCY_BUCKETS, 0.0]) | st.floats(0, 5, allow_nan=False), max_size=60))
def test_tallied_latencies_give_the_histogram_of_observing_each(latencies: list[float]) -> None:
    metrics = ServerMetrics()
    reference = CollectorRegistry()
    observed = Histogram(
        "movierec_recommend_latency_seconds", "reference", buckets=LATENCY_BUCKETS, registry=reference
    )
    for number, seconds in enumerate(latencies):
        metrics.answered("200", "none", fallback=False, seconds=seconds)
        observed.observe(seconds)
        if number % 7 == 3:
            metrics.flush()  # counts flushed at any point add up the same
    metrics.flush()
    ours = samples(metrics.registry, "movierec_recommend_latency_seconds")
    theirs = samples(reference, "movierec_recommend_latency_seconds")
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert abs(ours[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_answers_are_counted_by_status_variant_and_fallback_once_flushed() -> None:
    metrics = ServerMetrics()
    answers = [("200", "none", False)] * 3 + [("200", "a", True), ("400", "none", False), ("200", "a", False)]
    for status, variant, fallback in answers:
        metrics.answered(status, variant, fallback, 0.001)
    requests = samples(metrics.registry, "movierec_recommend_requests")
    assert requests == {}, "nothing reaches the Prometheus metrics before a flush"
    metrics.render()  # flushes
    requests = samples(metrics.registry, "movierec_recommend_requests")
    assert requests[("movierec_recommend_requests_total", (("status", "200"), ("variant", "none")))] == 3
    assert requests[("movierec_recommend_requests_total", (("status", "200"), ("variant", "a")))] == 2
    assert requests[("movierec_recommend_requests_total", (("status", "400"), ("variant", "none")))] == 1
    fallbacks = samples(metrics.registry, "movierec_fallback_answers")
    assert fallbacks == {("movierec_fallback_answers_total", (("variant", "a"),)): 1}
    metrics.render()
    assert samples(metrics.registry, "movierec_recommend_requests") == requests, "a flush adds each once"
