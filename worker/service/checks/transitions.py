"""Where an outcome takes an account: its status, and which of its errors opens, repeats or is
resolved. A pure decision over plain data; `record.apply_outcome` writes it."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from connectors.base import TEMPORARY_CODES, CheckResult, ErrorCode, ProviderError
from models import AccountStatus

# Errors a passing check does not disprove: they come from events, not from the provider's API.
NOT_RESOLVED_BY_CHECK = frozenset({ErrorCode.EVENT_UNPROCESSABLE.value})
RESOLVED_BY_PASS = frozenset(c.value for c in ErrorCode) - NOT_RESOLVED_BY_CHECK
# Errors only an operator can fix: logged once, when opened, besides being recorded.
OPERATOR_CODES = frozenset({ErrorCode.CREDENTIALS_UNREADABLE})


def status_for(code: ErrorCode) -> AccountStatus:
    """The status an account takes when a check fails with `code`."""
    if code in TEMPORARY_CODES:
        return AccountStatus.DEGRADED
    if code is ErrorCode.CONNECTION_REVOKED:
        return AccountStatus.DISCONNECTED
    return AccountStatus.ERROR


@dataclass(frozen=True)
class Transition:
    status: AccountStatus
    error: ErrorCode | None = None  # the problem the outcome names, if it failed
    repeat: bool = False  # that error is open already: counted again, not opened
    resolves: frozenset[str] = frozenset()  # open error codes the outcome resolves

    @property
    def opens(self) -> bool:
        return self.error is not None and not self.repeat


def transition(outcome: CheckResult | ProviderError, open_codes: Collection[str]) -> Transition:
    """Where `outcome` takes an account whose open errors have `open_codes`."""
    if isinstance(outcome, CheckResult):
        return Transition(
            AccountStatus.CONNECTED, resolves=RESOLVED_BY_PASS.intersection(open_codes)
        )
    code = outcome.code
    return Transition(status_for(code), code, repeat=code.value in open_codes)
