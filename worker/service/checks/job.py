"""The `accounts.check` job: check one account now, outside the schedule, and record the outcome
the way a scheduled check would, outages included: while the provider is down or suspect, the
failure is counted on its incident (started if the checks say so, those of other processes
included: `incidents.assess`), not on the account."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import CheckResult, ProviderError
from models import Account, AccountStatus, utc_now
from worker.service import audit, incidents
from worker.service.checks.probe import probe
from worker.service.checks.record import record_check
from worker.service.checks.verdicts import CheckOutcome, Verdict
from worker.service.deps import Deps
from worker.service.incidents import Assessment
from worker.service.outages import RecentChecks
from worker.service.outcomes import Outcome, Reason, Rejected
from worker.service.views import summary


def check_now(
    session: Session, deps: Deps, account_id: uuid.UUID, *, recent: RecentChecks | None = None
) -> Outcome:
    """Check one account now. `recent`: the provider checks to judge an outage by; by default
    this process's, which its scheduled batches add to as well."""
    with deps.db.unit_of_work() as read:
        account = read.get(Account, account_id)
        if account is None:
            raise Rejected(Reason.NOT_FOUND, "no such account")
        read.expunge(account)
    if account.status == AccountStatus.DISCONNECTED:
        return Outcome(
            "not checked: the account is disconnected; connect it again with new credentials",
            summary(account),
            {"checked": False},
        )
    found = probe(deps, account)
    current = session.scalars(
        select(Account).where(Account.id == account_id).with_for_update()
    ).first()
    if current is None:
        raise Rejected(Reason.NOT_FOUND, "the account was removed during the check")
    judged_by = recent or incidents.recent_for(deps.db)
    checked = {current.id: found.outcome}
    assessment = incidents.assess(session, current.type, checked, judged_by, utc_now())
    verdict = record_check(
        session, current, found.outcome, assessment, scheduled=False, noted=found.noted
    )
    if verdict is Verdict.INCIDENT and assessment.incident is not None:
        incidents.count_failures(session, assessment.incident, 1)
    session.flush()
    message, extra = answer(current.type, found.outcome, verdict, assessment)
    if extra["checked"]:  # on demand only: the scheduled checks are not audited
        said = "passed" if extra.get("passed") else extra.get("error_code")
        audit.account_change(session, "account.checked", current, None, extra, outcome=said)
    return Outcome(message, summary(current), extra)


def answer(
    provider: str, outcome: CheckOutcome, verdict: Verdict, assessment: Assessment
) -> tuple[str, dict[str, Any]]:
    """The job's words and result fields for a verdict."""
    if verdict is Verdict.GONE:
        return "not recorded: the account was disconnected during the check", {"checked": False}
    if isinstance(outcome, CheckResult):
        return "check passed", {"checked": True, "passed": True}
    assert isinstance(outcome, ProviderError)
    extra: dict[str, Any] = {
        "checked": True,
        "passed": False,
        "error_code": outcome.code.value,
        "incident": verdict is Verdict.INCIDENT,
    }
    message = f"check failed: {outcome}"
    if verdict is Verdict.INCIDENT:
        assert assessment.incident is not None
        extra["incident_id"] = str(assessment.incident.id)
        message += (
            f"; {provider} is failing for many accounts (incident {assessment.incident.id}), "
            "so the failure is counted there and the account's status is unchanged"
        )
    elif verdict is Verdict.HELD:
        message += (
            f"; {provider} is failing for other accounts too, so the failure is not blamed on "
            "this account yet and its status is unchanged"
        )
    return message, extra
