"""Recording what a check found, in the caller's transaction: the verdict (`verdicts.judge`) on
the account, then its status, errors and events (`transitions.transition`) when it is recorded."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import CheckResult
from models import Account, AccountError, utc_now
from worker.service.checks.transitions import (
    OPERATOR_CODES,
    RESOLVED_BY_PASS,
    Transition,
    transition,
)
from worker.service.checks.verdicts import (
    HOLD,
    INCONCLUSIVE,
    CheckOutcome,
    HoldRules,
    Verdict,
    judge,
)
from worker.service.incidents import Assessment
from worker.service.queries import among
from worker.service.records import open_error, resolve_errors, set_status

log = structlog.get_logger(__name__)


def record_check(
    session: Session,
    account: Account,
    outcome: CheckOutcome | None,
    assessment: Assessment,
    *,
    scheduled: bool,
    stale: bool = False,
    open_codes: Collection[str] | None = None,
    rules: HoldRules = HOLD,
    noted: bool = False,
) -> Verdict:
    """Judge one check of a locked account and write what the verdict says: the full record,
    or only that it was checked (held back, or counted on the provider's incident). `noted`:
    the outcome's error was written already, by the refresh that failed (`Probe.noted`)."""
    verdict = judge(
        account.status,
        account.consecutive_failures,
        outcome,
        assessment.health,
        incident=assessment.incident is not None,
        stale=stale,
        scheduled=scheduled,
        rules=rules,
    )
    if verdict in INCONCLUSIVE:
        account.last_checked_at = utc_now()
        account.consecutive_failures += 1
    elif verdict is Verdict.RECORDED:
        assert outcome is not None, "judge records no crash"
        apply_outcome(session, account, outcome, "check", open_codes=open_codes, noted=noted)
    return verdict


def apply_outcome(
    session: Session,
    account: Account,
    outcome: CheckOutcome,
    source: str,
    *,
    open_codes: Collection[str] | None = None,
    noted: bool = False,
) -> Transition:
    """Record what a check found: status only on change, one open error per problem.

    `open_codes`, when the caller already read the account's open errors (a batch does, in one
    query), spares reading them here. `noted`: the failure's error is written already (and
    counted once), so only the rest is recorded.
    """
    account.last_checked_at = utc_now()
    codes = (
        open_codes
        if open_codes is not None
        else open_error_codes(session, [account.id])[account.id]
    )
    step = transition(outcome, codes)
    if isinstance(outcome, CheckResult):
        account.consecutive_failures = 0
        if outcome.metadata:
            account.meta = {**account.meta, **outcome.metadata}
        if step.resolves:
            resolve_errors(session, account, set(RESOLVED_BY_PASS))
        set_status(session, account, step.status, "check passed", source)
        return step
    account.consecutive_failures += 1
    if not noted:
        open_error(session, account, outcome.code, outcome.message, source, open_codes=codes)
    set_status(session, account, step.status, outcome.message, source)
    if step.opens and outcome.code in OPERATOR_CODES:
        # An operator must act; said once, when the problem appears, not at every check.
        log.error(
            outcome.code.value,
            account_id=str(account.id),
            org_id=account.org_id,
            message=outcome.message,
        )
    return step


def open_error_codes(
    session: Session, account_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, set[str]]:
    """The codes of the accounts' open errors, in one query."""
    codes: dict[uuid.UUID, set[str]] = defaultdict(set)
    ids = list(account_ids)
    if ids:
        for account_id, code in session.execute(
            select(AccountError.account_id, AccountError.code).where(
                among(session, AccountError.account_id, ids),
                AccountError.resolved_at.is_(None),
            )
        ):
            codes[account_id].add(code)
    return codes
