"""When a check refreshes credentials, on plain data: a rejected access token is refreshed once,
and under the account's lock a refresh happens only if no one refreshed since."""

from __future__ import annotations

import pytest

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from worker.service.checks.probe import refresh_now, retry_refreshed


@pytest.mark.parametrize(
    ("failure", "can_refresh", "retry"),
    [
        (PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "401"), True, True),
        (PermanentFailure(ErrorCode.CREDENTIALS_EXPIRED, "expired"), True, True),
        (PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "401"), False, False),  # a key: no
        (PermanentFailure(ErrorCode.PERMISSION_MISSING, "403"), True, False),
        (PermanentFailure(ErrorCode.REFRESH_FAILED, "dead"), True, False),
        (TemporaryFailure(ErrorCode.PROVIDER_UNAVAILABLE, "503"), True, False),
    ],
)
def test_only_a_rejected_token_with_a_refresh_token_is_refreshed_and_tried_again(
    failure: ProviderError, can_refresh: bool, retry: bool
) -> None:
    assert retry_refreshed(failure, can_refresh) is retry


def test_a_planned_refresh_happens_while_the_token_expires_soon() -> None:
    assert refresh_now(3, rejected=None, expiring=True)
    assert not refresh_now(3, rejected=None, expiring=False)  # someone refreshed first


def test_a_refusal_refreshes_unless_the_version_moved_on_since() -> None:
    assert refresh_now(3, rejected=3, expiring=False)  # whatever the recorded expiry says
    assert not refresh_now(4, rejected=3, expiring=False)  # a concurrent check refreshed
    assert not refresh_now(4, rejected=3, expiring=True)
