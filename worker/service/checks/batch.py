"""Checking a claimed batch in one worker process: read the leased accounts, check them
concurrently on one event loop, and record every outcome in one transaction."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import DateTime, Table, Uuid, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from connectors.base import CheckResult
from models import Account, AccountStatus, utc_now
from worker import metrics
from worker.service import incidents
from worker.service.checks.cadence import Cadence
from worker.service.checks.probe import CheckTarget, Probe, probe_async, unreadable
from worker.service.checks.record import open_error_codes, record_check
from worker.service.checks.schedule import DISCONNECTED, Batch
from worker.service.checks.verdicts import HOLD, HoldRules, Verdict
from worker.service.deps import Deps
from worker.service.outages import IncidentPolicy, RecentChecks
from worker.service.queries import among
from worker.vault import VaultError

log = structlog.get_logger(__name__)


@dataclass
class BatchReport:
    provider: str
    accounts: int
    checked: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    passed: int = 0
    incident: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchChecker:
    """Checks batches in one worker process: the connectors' event loop and HTTP client, a bound
    on concurrent checks per provider, and the providers' recent checks for incident detection."""

    def __init__(
        self,
        deps: Deps,
        cadence: Cadence,
        *,
        policy: IncidentPolicy | None = None,
        recent: RecentChecks | None = None,
        rules: HoldRules = HOLD,
        concurrency: int = 64,
        refreshes: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        self.deps = deps
        self.cadence = cadence
        # By default the process's recent checks, which its `accounts.check` jobs share.
        self.recent = recent or incidents.recent_for(deps.db, policy)
        self.rules = rules
        self.concurrency = concurrency
        self.refreshes = refreshes
        self.rng = rng or random.Random()

    def run(self, batch: Batch) -> BatchReport:
        started = time.monotonic()
        accounts = self._leased(batch)
        probes = self.deps.connectors.run(self._probe_all(accounts)) if accounts else {}
        with self.deps.db.unit_of_work() as session:
            report = self._record(session, batch, probes)
        report.seconds = round(time.monotonic() - started, 3)
        log.info("checks_batch", **report.as_dict())
        return report

    def _leased(self, batch: Batch) -> list[CheckTarget]:
        """The batch's accounts still under this batch's lease (a message delivered twice, or
        after a later claim, finds none)."""
        table = cast(Table, Account.__table__)
        with self.deps.db.unit_of_work() as session:
            rows = session.execute(
                select(
                    table.c.id,
                    table.c.type,
                    table.c.org_id,
                    table.c.connection,
                    table.c.credentials,
                    table.c.credentials_version,
                ).where(
                    among(session, table.c.id, batch.account_ids),
                    table.c.next_check_at == batch.lease,
                    table.c.status != DISCONNECTED,
                )
            ).all()
        return [CheckTarget(*row) for row in rows]

    async def _probe_all(
        self, accounts: list[CheckTarget]
    ) -> dict[uuid.UUID, Probe | BaseException]:
        gate = asyncio.Semaphore(self.concurrency)
        refresh_gate = asyncio.Semaphore(self.refreshes)
        ahead = timedelta(seconds=self.cadence.refresh_ahead)

        # Decrypted in one pass before any call goes out: by measurement this saves about 40 us
        # of CPU per check over decrypting inside each check, between other checks' network work.
        secrets: dict[uuid.UUID, dict[str, Any] | Exception] = {}
        for account in accounts:
            try:
                secrets[account.id] = self.deps.vault.decrypt(account.credentials)
            except Exception as exc:  # that account's check fails, not the batch
                secrets[account.id] = exc

        async def one(account: CheckTarget) -> Probe:
            credentials = secrets[account.id]
            if isinstance(credentials, VaultError):
                return metrics.checked(account.type, unreadable(account))
            if isinstance(credentials, Exception):
                raise credentials
            async with gate:
                return await probe_async(
                    self.deps,
                    account,
                    refresh_ahead=ahead,
                    refresh_gate=refresh_gate,
                    credentials=credentials,
                )

        results = await asyncio.gather(*(one(a) for a in accounts), return_exceptions=True)
        return {a.id: r for a, r in zip(accounts, results, strict=True)}

    def _record(
        self, session: Session, batch: Batch, probes: dict[uuid.UUID, Probe | BaseException]
    ) -> BatchReport:
        """One transaction for the batch: lock its rows, keep those still under our lease, and
        write each outcome. A pass that changes nothing but the times (the common case) is
        written in one statement for all such accounts; anything else goes through the account's
        full record (status, errors, events)."""
        report = BatchReport(batch.provider, len(batch.account_ids))
        if not probes:
            return report
        now = utc_now()
        table = cast(Table, Account.__table__)
        locked = session.execute(
            select(
                table.c.id,
                table.c.next_check_at,
                table.c.status,
                table.c.credentials_version,
                table.c.consecutive_failures,
                table.c.credentials_expire_at,
                table.c["metadata"],
            )
            .where(among(session, table.c.id, probes))
            .order_by(table.c.id)
            .with_for_update()
        ).all()
        current = [row for row in locked if row[1] == batch.lease]
        outcomes = {
            row[0]: p.outcome
            for row in current
            if isinstance(p := probes[row[0]], Probe) and p.credentials_version == row[3]
        }
        assessment = incidents.assess(session, batch.provider, outcomes, self.recent, now)
        # Read after the assessment: an incident that starts takes accounts' outage errors.
        open_codes = open_error_codes(session, (row[0] for row in current))
        counts: dict[str, int] = defaultdict(int)
        unchanged: dict[uuid.UUID, datetime | None] = {}
        plain = {row[0] for row in current if _plain_pass(row, probes[row[0]], open_codes[row[0]])}
        # The others get the full record: load them in one query (their rows are locked above).
        others = [row[0] for row in current if row[0] not in plain]
        loaded = (
            {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(others)))}
            if others
            else {}
        )
        for account_id, _, status, _, _, expires_at, _ in current:
            probe = probes[account_id]
            outcome = probe.outcome if isinstance(probe, Probe) else None
            if account_id in plain:
                due = self.cadence.due(
                    status, 0, expires_at, Verdict.RECORDED, outcome, now, self.rng
                )
                unchanged[account_id] = due
                verdict = Verdict.RECORDED
            else:
                account = loaded[account_id]
                stale = (
                    isinstance(probe, Probe)
                    and probe.credentials_version != account.credentials_version
                )
                verdict = record_check(
                    session,
                    account,
                    outcome,
                    assessment,
                    scheduled=True,
                    stale=stale,
                    open_codes=open_codes[account_id],
                    rules=self.rules,
                    noted=isinstance(probe, Probe) and probe.noted,
                )
                if verdict is Verdict.CRASHED:
                    log.error("check_crashed", account_id=str(account_id), error=repr(probe))
                account.next_check_at = self.cadence.next_check(
                    account, verdict, outcome, now, self.rng
                )
            counts[verdict.value] += 1
            report.passed += isinstance(outcome, CheckResult) and verdict is Verdict.RECORDED
        if unchanged:
            _write_plain_passes(session, now, unchanged)
        if assessment.incident is not None:
            incidents.count_failures(session, assessment.incident, counts[Verdict.INCIDENT.value])
            report.incident = str(assessment.incident.id)
        report.checked = len(current)
        report.verdicts = dict(counts)
        return report


def _plain_pass(row: Sequence[Any], probe: Probe | BaseException, open_codes: set[str]) -> bool:
    """A pass that changes nothing but the account's times: connected, no failures or open
    errors, the same metadata, and checked with the credentials it still has."""
    _, _, status, version, failures, _, meta = row
    return (
        isinstance(probe, Probe)
        and isinstance(probe.outcome, CheckResult)
        and probe.credentials_version == version
        and status == AccountStatus.CONNECTED
        and failures == 0
        and not open_codes
        and {**meta, **probe.outcome.metadata} == meta
    )


def _write_plain_passes(
    session: Session, now: datetime, due: dict[uuid.UUID, datetime | None]
) -> None:
    """Stamp the plain passes checked and set their next check, in one statement. On PostgreSQL
    an UPDATE from two arrays: by measurement it costs PostgreSQL less than half the CPU of one
    UPDATE per row (executemany, which other databases get), and the worker half."""
    table = cast(Table, Account.__table__)
    # `updated_at` kept: nothing about the account changed.
    if session.get_bind().dialect.name == "postgresql":
        rows = (
            func.unnest(
                bindparam("ids", type_=ARRAY(Uuid())),
                bindparam("dues", type_=ARRAY(DateTime(timezone=True))),
            )
            .table_valued("id", "due")
            .render_derived()
        )
        session.execute(
            update(table)
            .where(table.c.id == rows.c.id)
            .values(last_checked_at=now, next_check_at=rows.c.due, updated_at=table.c.updated_at),
            {"ids": list(due), "dues": list(due.values())},
        )
        return
    session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            last_checked_at=bindparam("b_checked"),
            next_check_at=bindparam("b_due"),
            updated_at=table.c.updated_at,
        ),
        [{"b_id": i, "b_checked": now, "b_due": d} for i, d in due.items()],
    )
