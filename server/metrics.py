"""The service's Prometheus metrics, aggregated across Sanic workers.

``movierec serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client reads it
when first imported) before any worker starts: every worker then writes its
values to memory-mapped files there and the operator port's ``/metrics``
(server.ops, in the main process) sums them. Without the variable (sanic-testing,
one process) the metrics live in the app's own registry. Either way each app has a
private registry, so several apps in one test process do not collide.

Per answer the worker only adds to plain Python counts (``answered``): a multiprocess
metric update takes a lock and writes an mmap (several µs each, three per answer). The
counts are added to the Prometheus metrics by ``flush``, which the worker's background
loop calls every 0.25 s, ``render`` calls before rendering and a stopping worker calls
before it exits: the figures are the same, at most 0.25 s late for a scrape.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The site gives up after 800 ms; the goal is p99 under 5 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 2.0)

__all__ = ["LatencyHistogram", "ServerMetrics", "multiprocess_dir"]


def multiprocess_dir() -> str | None:
    """The shared metrics folder when the service runs several workers, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


class LatencyHistogram(Histogram):
    """A Histogram that also takes many observations at once: a worker's tally, per bucket."""

    def add(self, bucket_counts: Sequence[int], total: float) -> None:
        """Add ``bucket_counts[i]`` observations to bucket i (non-cumulative) whose sum is ``total``."""
        for bucket, count in zip(self._buckets, bucket_counts, strict=True):
            if count:
                bucket.inc(count)
        self._sum.inc(total)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._bounds = (*LATENCY_BUCKETS, float("inf"))
        self._answers: Tally[tuple[str, str]] = Tally()  # (status, variant) -> answers since the flush
        self._fallbacks: Tally[str] = Tally()
        self._latency_counts = [0] * len(self._bounds)
        self._latency_sum = 0.0
        self.requests = Counter(
            "movierec_recommend_requests",
            "recommendation answers by status and variant",
            ["status", "variant"],
            registry=r,
        )
        self.latency = LatencyHistogram(
            "movierec_recommend_latency_seconds",
            "time to answer a recommendation request",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallback = Counter(
            "movierec_fallback_answers",
            "answers with the fallback list (unknown user)",
            ["variant"],
            registry=r,
        )
        self.lookup_errors = Counter(
            "movierec_lookup_errors",
            "lookups the serving file failed (answered with the fallback)",
            registry=r,
        )
        # livemax: a version shows 1 while any live worker serves it (during a swap, both may)
        self.model_info = Gauge(
            "movierec_model_info",
            "model version served (1) per variant",
            ["version", "variant"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_created = Gauge(
            "movierec_model_created_timestamp_seconds",
            "creation time of the oldest model a worker serves",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.swaps = Counter("movierec_model_swaps", "serving files swapped in (per worker)", registry=r)
        self.refused = Counter(
            "movierec_refused_files", "serving files or experiment configs refused", ["kind"], registry=r
        )
        self.provenance_sent = Counter(
            "movierec_provenance_sent", "provenance records the broker acknowledged", registry=r
        )
        self.throttled = Counter(
            "movierec_throttled_requests",
            "/recommend requests refused with 429: a client other than the site's over its rate limit",
            registry=r,
        )
        self.provenance_dropped = Counter(
            "movierec_provenance_dropped",
            "provenance records dropped (buffer full or undeliverable)",
            ["reason"],
            registry=r,
        )

    def answered(self, status: str, variant: str, fallback: bool, seconds: float) -> None:
        """Count one answer (in process; ``flush`` adds it to the metrics)."""
        self._answers[status, variant] += 1
        if fallback:
            self._fallbacks[variant] += 1
        # the bucket of ``seconds``: the first bound >= it, as Histogram.observe chooses
        self._latency_counts[bisect_left(self._bounds, seconds)] += 1
        self._latency_sum += seconds

    def flush(self) -> None:
        """Add the answers counted since the last flush to the Prometheus metrics."""
        answers, self._answers = self._answers, Tally()
        fallbacks, self._fallbacks = self._fallbacks, Tally()
        counts, self._latency_counts = self._latency_counts, [0] * len(self._bounds)
        total, self._latency_sum = self._latency_sum, 0.0
        for (status, variant), count in answers.items():
            self.requests.labels(status, variant).inc(count)
        for variant, count in fallbacks.items():
            self.fallback.labels(variant).inc(count)
        if any(counts):
            self.latency.add(counts, total)

    def render(self) -> bytes:
        """This process's own values (one-process tests); the service's sum is on the operator port."""
        self.flush()
        return generate_latest(self.registry)

    def worker_exited(self) -> None:
        """Flush, then drop this worker's live gauges (prometheus_client's multiprocess clean-up)."""
        self.flush()
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())
