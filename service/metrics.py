"""Prometheus metrics (prometheus-client): requests by route template and status with their latency,
images embedded by backbone and runtime with the backbone's time, trains by outcome with their time,
URL fetches by outcome (loupe.errors.FetchOutcome),
and, read at scrape time from LMDB, each app's inputs and index vectors and the jobs queued or running
in every process. Labels are route templates, app ids, backbones and statuses, never input ids, so
their number stays bounded (429, 503 and 507 answers are `loupe_http_requests_total{status=...}`).

With `loupe serve --workers N` the counters and histograms are shared through prometheus-client's
multi-process mode (PROMETHEUS_MULTIPROC_DIR, set by `loupe serve`): any worker's `/metrics` answers
for all of them.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from loupe.application import Loupe

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Store(Collector):
    """Read at scrape time: LMDB is shared by every worker, so any one of them answers for all."""

    def __init__(self, loupe: Loupe) -> None:
        self._loupe = loupe

    def collect(self) -> Iterator[GaugeMetricFamily]:
        inputs = GaugeMetricFamily("loupe_app_inputs", "inputs an app holds", labels=["app"])
        vectors = GaugeMetricFamily("loupe_app_index_vectors", "vectors in an app's loaded index (this process)",
                                    labels=["app", "kind"])
        jobs = GaugeMetricFamily("loupe_training_jobs", "trains, evaluations and quality jobs queued or running, "
                                 "all processes", labels=["app"])
        for summary in self._loupe.apps.summaries():
            inputs.add_metric([summary.app.id], summary.input_count)
            jobs.add_metric([summary.app.id], self._loupe.trainer.jobs.count(summary.app.id))
            loaded = self._loupe.context.indexes.loaded(summary.app.id)
            if loaded is not None:
                vectors.add_metric([summary.app.id, loaded.kind], loaded.count())
        yield from (inputs, vectors, jobs)


class Metrics:
    def __init__(self, loupe: Loupe) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        multi = os.environ.get(MULTIPROC_ENV)
        target = None if multi else self.registry  # multi-process: values live in files, collected below
        self.requests = Counter("loupe_http_requests", "HTTP requests", ["route", "method", "status"], registry=target)
        self.latency = Histogram("loupe_http_request_seconds", "HTTP request latency", ["route", "method"],
                                 buckets=LATENCY_BUCKETS, registry=target)
        self.embedded = Counter("loupe_images_embedded", "images embedded by a backbone", ["backbone", "embedder"],
                                registry=target)
        self.embed_seconds = Histogram("loupe_embed_batch_seconds", "backbone time per embedded batch",
                                       ["backbone", "embedder"], buckets=LATENCY_BUCKETS, registry=target)
        self.trains = Counter("loupe_trains", "finished trains", ["status"], registry=target)
        self.train_seconds = Histogram("loupe_train_seconds", "train durations", buckets=LATENCY_BUCKETS,
                                       registry=target)
        self.url_fetches = Counter("loupe_url_fetches", "URL fetches by how they ended", ["outcome"], registry=target)
        if multi:
            multiprocess.MultiProcessCollector(self.registry)
        self.registry.register(_Store(loupe))
        loupe.context.events.embedded.append(self._embedded)
        loupe.context.events.trained.append(self._trained)
        loupe.urls.observers.append(lambda outcome: self.url_fetches.labels(outcome.value).inc())

    def _embedded(self, backbone: str, embedder: str, images: int, seconds: float) -> None:
        self.embedded.labels(backbone, embedder).inc(images)
        self.embed_seconds.labels(backbone, embedder).observe(seconds)

    def _trained(self, status: str, seconds: float) -> None:
        self.trains.labels(status).inc()
        if seconds:
            self.train_seconds.observe(seconds)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One finished request (service.request_ids' middleware tells every one)."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> bool:
        """Also answer the metrics, without a credential, on HOST:PORT (`--metrics-bind`, a private address
        checked by the command). False when another worker of this server already serves them there: with
        --workers each tries, the first to bind answers for all (the multi-process files)."""
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
        log.info("metrics served without a credential on http://%s:%d/metrics", host, port)
        return True
