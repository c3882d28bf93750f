"""Prometheus metrics (prometheus-client): the HTTP API's requests and writes, the scheduler's
job runs, and their exposition in the text format.

Several `loyalty serve` workers are several processes: `serve` points
PROMETHEUS_MULTIPROC_DIR at a folder of its own before any worker starts (the client reads
it when first imported), each worker writes its samples there, and whichever worker answers
GET /metrics adds them all up. Without that variable (the scheduler, tests) the process's own
registry is exposed. Labels are bounded: route templates, never raw paths; job, program
and count names, never member ids.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus reads (our names need nothing newer).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

HTTP_REQUESTS = Counter(
    "loyalty_http_requests", "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "loyalty_http_request_duration_seconds", "Time to answer an HTTP request, by method and "
    "route template.", ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
WRITES = Counter(
    "loyalty_writes", "HTTP writes by kind (purchase, refund, enrolment, redemption, "
    "reversal, fee_payment) and outcome: recorded, replayed (an idempotent replay), "
    "refused (4xx: nothing written), failed (5xx).", ["kind", "outcome"])
SCHEDULER_RUNS = Counter(
    "loyalty_scheduler_job_runs", "Scheduler job runs (one per fire time and program) by "
    "outcome: ok, partial (some members failed, retried next run), failed.",
    ["job", "program", "outcome"])
SCHEDULER_DURATION = Histogram(
    "loyalty_scheduler_job_run_duration_seconds", "Time one job run took.", ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0))
SCHEDULER_EFFECTS = Counter(
    "loyalty_scheduler_job_effects", "What job runs did, by count: points_activated, "
    "points_expired_by_program, vouchers_issued and the like (the job report's numbers).",
    ["job", "effect"])


def registry() -> CollectorRegistry:
    """The registry to expose: every worker's samples in multiprocess mode, else this
    process's own."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return REGISTRY
    collected = CollectorRegistry()
    MultiProcessCollector(collected, path=folder)  # type: ignore[no-untyped-call]
    return collected


def exposition() -> bytes:
    """The metrics in Prometheus's text format."""
    return generate_latest(registry())
