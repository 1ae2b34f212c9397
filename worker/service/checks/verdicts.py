"""What one account's check outcome comes to: recorded on the account, held back, counted on the
provider's incident, or dropped. A pure decision over plain data, shared by the scheduled batches
and the `accounts.check` job, so both treat an outage alike."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from connectors.base import CheckResult, ProviderError
from models import AccountStatus
from worker.service.outages import Health, is_outage

CheckOutcome = CheckResult | ProviderError


class Verdict(enum.StrEnum):
    """What became of one account's check."""

    RECORDED = "recorded"  # status, errors and events written from the outcome
    HELD = "held"  # a temporary failure not yet blamed on the account: nothing recorded
    INCIDENT = "incident"  # an outage failure during a provider incident: counted there
    STALE = "stale"  # the credentials changed while we checked: the outcome says nothing
    CRASHED = "crashed"  # the check itself raised (a bug): retried, nothing recorded
    GONE = "gone"  # disconnected meanwhile: unscheduled


@dataclass(frozen=True)
class HoldRules:
    """How long a temporary failure of a healthy account is held back before it is recorded."""

    # A scheduled check flips a healthy account to degraded only when a temporary failure
    # repeats: the retry comes after the provider's other checks have shown whether it is an
    # outage.
    confirm_after: int = 2
    # While the provider is in doubt (suspect, or too few checks seen), hold up to this many.
    hold_limit: int = 5


HOLD = HoldRules()
INCONCLUSIVE = frozenset({Verdict.HELD, Verdict.INCIDENT})


def judge(
    status: str,
    failures: int,
    outcome: CheckOutcome | None,
    health: Health,
    *,
    incident: bool,
    stale: bool = False,
    scheduled: bool = True,
    rules: HoldRules = HOLD,
) -> Verdict:
    """The verdict on one check of an account with this `status` and `failures` in a row.

    `outcome` None: the check raised. `health` and `incident`: the provider's assessment after
    this check. A scheduled check holds back a healthy account's first temporary failure and any
    while the provider's health is not known to be good; a job (someone asking now) holds only
    on evidence, when the provider is suspect or down, and otherwise says what it found.
    """
    if status == AccountStatus.DISCONNECTED:
        return Verdict.GONE
    if outcome is None:
        return Verdict.CRASHED
    if stale:
        return Verdict.STALE
    if not (isinstance(outcome, ProviderError) and outcome.temporary):
        return Verdict.RECORDED
    if incident and is_outage(outcome):
        return Verdict.INCIDENT
    doubtful = health is not Health.HEALTHY and (scheduled or health is not Health.UNKNOWN)
    if status == AccountStatus.ERROR and (scheduled or doubtful):
        # An account that needs a person stays in error: a provider hiccup changes nothing.
        return Verdict.HELD
    if status not in (AccountStatus.CONNECTED, AccountStatus.PENDING):
        return Verdict.RECORDED  # already degraded: each further failure counts on its error
    tries = failures + 1
    if scheduled and tries < rules.confirm_after:
        return Verdict.HELD
    return Verdict.HELD if doubtful and tries < rules.hold_limit else Verdict.RECORDED
