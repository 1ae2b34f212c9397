"""Health checks, in four rooms: `probe` asks the provider (refreshing credentials), `record`
writes what a check found, `batch` checks a claimed batch, `schedule` claims what is due. The
decisions are pure functions over plain data: `verdicts`, `transitions`, `cadence` (and
`worker.service.outages` for incidents)."""

from worker.service.checks.job import check_now
from worker.service.checks.probe import (
    CheckTarget,
    Probe,
    probe,
    probe_async,
    refresh_credentials,
    usable_credentials,
)
from worker.service.checks.record import apply_outcome
from worker.service.checks.verdicts import CheckOutcome

__all__ = [
    "CheckOutcome",
    "CheckTarget",
    "Probe",
    "apply_outcome",
    "check_now",
    "probe",
    "probe_async",
    "refresh_credentials",
    "usable_credentials",
]
