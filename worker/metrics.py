"""Prometheus metrics of the worker; `/metrics` on the ingest serves the ingest process's own."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

JOBS = Counter(
    "connections_jobs_total", "Jobs finished, by task and result status", ["job", "status"]
)
JOB_SECONDS = Histogram(
    "connections_job_seconds",
    "Time to run a job",
    ["job"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
