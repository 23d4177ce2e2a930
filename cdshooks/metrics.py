"""Metrics: the service's Prometheus counters and histograms, added up over every gunicorn worker.

``/metrics`` (``service/observability.py``) renders them. Under gunicorn, ``gunicorn_conf``
points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before any worker starts; each worker
then writes its values to files there and a scrape adds them up (prometheus_client's
multiprocess mode). Without it (tests, the CLI) the values live in this process.

Label values are bounded: service and rule ids, indicators, fixed reason codes, the
configured FHIR servers. Never a patient, a token or anything else a client chose freely.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = ["render", "hook_answered", "prime", "STAGES", "CONTENT_TYPE", "REQUEST_SECONDS", "HOOK_STAGE_SECONDS",
           "CARDS_ISSUED", "RULE_FAILURES", "FHIR_FETCH_SECONDS", "FHIR_FETCH_ERRORS", "AUTH_REJECTIONS", "FEEDBACK",
           "OVERRIDE_REASONS", "ISSUED_RECORDS", "ISSUED_QUEUE", "STORE_ERRORS"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUEST_SECONDS = Histogram(
    "cdshooks_http_request_duration_seconds", "HTTP requests by endpoint, CDS service and status",
    ["endpoint", "service", "status"], buckets=_FAST)
HOOK_STAGE_SECONDS = Histogram(
    "cdshooks_hook_stage_duration_seconds",
    "Stages of answered hook calls: data (prefetch and fetch), fetch, record, rules, store, total",
    ["service", "stage"], buckets=_FAST)
CARDS_ISSUED = Counter("cdshooks_cards_issued_total", "Cards answered, by rule and indicator",
                       ["rule", "indicator"])
RULE_FAILURES = Counter("cdshooks_rule_failures_total", "Rules that raised and were skipped", ["rule"])
FHIR_FETCH_SECONDS = Histogram(
    "cdshooks_fhir_fetch_duration_seconds", "Requests to a fhirServer (one page each), by server and outcome",
    ["server", "outcome"], buckets=_FAST)
FHIR_FETCH_ERRORS = Counter("cdshooks_fhir_fetch_errors_total", "Failed requests to a fhirServer, by reason",
                            ["server", "reason"])
AUTH_REJECTIONS = Counter("cdshooks_auth_rejections_total", "Client JWTs refused, by reason", ["reason"])
FEEDBACK = Counter("cdshooks_feedback_total", "Feedback items stored, by rule and outcome", ["rule", "outcome"])
OVERRIDE_REASONS = Counter("cdshooks_override_reasons_total", "Overridden cards, by rule and override reason",
                           ["rule", "reason"])
ISSUED_RECORDS = Counter(
    "cdshooks_issued_card_records_total",
    "Issued-card records: written, or dropped (queue full, database unavailable at shutdown or after retries)",
    ["result"])
ISSUED_QUEUE = Gauge("cdshooks_issued_card_queue", "Issued-card records waiting to be written",
                     multiprocess_mode="livesum")
STORE_ERRORS = Counter("cdshooks_store_errors_total", "Database operations that failed, by operation",
                       ["operation"])


STAGES = ("data", "fetch", "record", "rules", "store", "total")


def prime(service_ids: list[str]) -> None:
    """Create each service's hook series (at zero) in this process, so that a worker's first call
    does not create its metric files: the series every answered call observes."""
    for service in service_ids:
        REQUEST_SECONDS.labels("hook", service, "200")
        for stage in STAGES:
            HOOK_STAGE_SECONDS.labels(service, stage)
    ISSUED_QUEUE.inc(0)
    ISSUED_RECORDS.labels("written")


def hook_answered(service: str, stages: dict[str, float], cards: list[tuple[str, str]]) -> None:
    """One answered hook call: its stage timings (seconds) and its cards as (rule id, indicator)."""
    for stage, seconds in stages.items():
        _series(HOOK_STAGE_SECONDS, service, stage).observe(seconds)
    for rule, indicator in cards:
        _series(CARDS_ISSUED, rule, indicator).inc()


_SERIES: dict[tuple, object] = {}  # (metric, label values) -> its series, for the per-call metrics


def _series(metric, *labels: str):
    """``metric.labels(*labels)``, looked up once per process and label values (bounded: see above)."""
    key = (id(metric), labels)  # a series made before a fork writes the worker's own values after it
    found = _SERIES.get(key)
    if found is None:
        found = _SERIES[key] = metric.labels(*labels)
    return found


def render() -> tuple[bytes, str]:
    """The exposition text of every metric (summed over the workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE
    return generate_latest(REGISTRY), CONTENT_TYPE
