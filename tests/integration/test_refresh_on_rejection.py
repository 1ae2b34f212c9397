"""A rejected access token is refreshed once before it is believed: Fortnox and HubSpot accounts
whose token the provider refuses before its recorded expiry, checked by concurrent
`accounts.check` jobs and by scheduled batches, against the simulators and the real PostgreSQL.
One refresh serves every check that met the refusal, and so does one failed refresh: the checks
waiting behind it answer with its error instead of asking again. Only a failed refresh or a second
refusal opens an error, and a refresh that says the app was uninstalled disconnects the account.
(The HubSpot package's own tests hold its successful concurrent refresh.)"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from connectors import Connectors, ConnectorSettings
from connectors.http import HttpLayer
from models import StatusChange
from tests.conftest import FAST_RETRY
from tests.fixtures.checks import at_once, checker, make_due, run_due
from tests.fixtures.connectors import stored
from tests.simulators.base import Answer
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.hubspot import HubSpotSimulator
from worker.service.deps import Deps

REDIRECT = "https://app.standout.test/oauth/fortnox"
CHECKS = 10


def fortnox_account(deps: Deps, sim: FortnoxSimulator, add_account: Any) -> str:
    tenant = sim.add_tenant("Refusing AB")
    result = add_account(
        deps, "fortnox", {"code": sim.issue_code(tenant, REDIRECT), "redirect_uri": REDIRECT}
    )
    assert result["status"] == "succeeded", result
    return str(result["account"]["id"])


def refuse_token(deps: Deps, sim: FortnoxSimulator, account_id: str) -> dict[str, Any]:
    """Fortnox stops taking the account's access token, well before the expiry we recorded."""
    account, _ = stored(deps, account_id)
    credentials = deps.vault.decrypt(account.credentials)
    sim.expire_access_token(credentials["access_token"])
    return credentials


def statuses(deps: Deps, account_id: str) -> list[str]:
    with deps.db.unit_of_work() as s:
        return list(
            s.scalars(
                select(StatusChange.to_status)
                .where(StatusChange.account_id == uuid.UUID(account_id))
                .order_by(StatusChange.id)
            )
        )


def concurrent_checks(
    deps: Deps, settings: ConnectorSettings, check_account: Any, account_id: str
) -> list[dict[str, Any]]:
    """CHECKS `accounts.check` jobs of the account at once, as from as many worker processes."""
    return at_once(
        deps,
        lambda: Connectors(settings, HttpLayer(timeout=5.0, retry=FAST_RETRY)),
        lambda own, _: dict(check_account(own, account_id)),
        range(CHECKS),
    )


def test_ten_concurrent_checks_that_meet_a_refused_token_refresh_once_and_stay_connected(
    deps: Deps,
    fortnox_sim: FortnoxSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    account_id = fortnox_account(deps, fortnox_sim, add_account)
    old = refuse_token(deps, fortnox_sim, account_id)
    assert fortnox_sim.refresh_calls == 0

    results = concurrent_checks(deps, connector_settings, check_account, account_id)

    assert [r["passed"] for r in results] == [True] * CHECKS, results
    assert fortnox_sim.refresh_calls == 1
    account, errors = stored(deps, account_id)
    assert (account.status, errors, account.credentials_version) == ("connected", [], 2)
    fresh = deps.vault.decrypt(account.credentials)
    assert fresh["access_token"] != old["access_token"]
    assert fresh["refresh_token"] != old["refresh_token"]
    assert statuses(deps, account_id) == ["connected"]  # never left connected


def test_ten_concurrent_checks_whose_refresh_fails_open_one_error(
    deps: Deps,
    fortnox_sim: FortnoxSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    account_id = fortnox_account(deps, fortnox_sim, add_account)
    old = refuse_token(deps, fortnox_sim, account_id)
    fortnox_sim.use_refresh_token(old["refresh_token"])  # spent elsewhere: the refresh fails

    results = concurrent_checks(deps, connector_settings, check_account, account_id)

    assert {(r["passed"], r["error_code"]) for r in results} == {(False, "refresh_failed")}
    # One check asked and wrote the failure under the account's lock; the others, finding it
    # there for the same credentials, answered with it.
    assert fortnox_sim.refresh_calls == 1
    account, errors = stored(deps, account_id)
    assert account.status == "error"
    assert [(e.code, e.occurrences) for e in errors] == [("refresh_failed", CHECKS)]
    assert statuses(deps, account_id) == ["connected", "error"]
    assert deps.vault.decrypt(account.credentials)["refresh_token"] == old["refresh_token"]
    # A check that begins afterwards asks again (test_connectors_fortnox holds it).


def test_a_scheduled_check_refreshes_a_refused_token_and_passes(
    check_deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any
) -> None:
    deps = check_deps
    account_id = fortnox_account(deps, fortnox_sim, add_account)
    refuse_token(deps, fortnox_sim, account_id)
    make_due(deps)

    [report] = run_due(deps, checker(deps))

    assert (report["checked"], report["passed"]) == (1, 1)
    assert fortnox_sim.refresh_calls == 1
    account, errors = stored(deps, account_id)
    assert (account.status, errors, account.credentials_version) == ("connected", [], 2)


def test_a_second_refusal_after_the_refresh_is_believed(
    check_deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any
) -> None:
    deps = check_deps
    account_id = fortnox_account(deps, fortnox_sim, add_account)
    fortnox_sim.script.push(Answer(401, path="/3/companyinformation"), 2)
    make_due(deps)

    [report] = run_due(deps, checker(deps))

    assert report["passed"] == 0
    assert fortnox_sim.refresh_calls == 1  # once, not again for the second refusal
    account, errors = stored(deps, account_id)
    assert account.status == "error"
    assert account.credentials_version == 2  # the refresh itself worked and was kept
    assert [(e.code, e.occurrences) for e in errors] == [("credentials_invalid", 1)]


def hubspot_account(deps: Deps, sim: HubSpotSimulator, add_account: Any) -> tuple[str, Any]:
    portal = sim.add_portal()
    redirect = "https://app.standout.test/connect/hubspot/callback"
    result = add_account(
        deps, "hubspot", {"code": sim.issue_code(portal, redirect), "redirect_uri": redirect}
    )
    assert result["status"] == "succeeded", result
    return str(result["account"]["id"]), portal


@pytest.mark.parametrize("path", ["job", "batch"])
def test_a_refresh_that_finds_the_app_uninstalled_disconnects_the_account(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, check_account: Any, path: str
) -> None:
    account_id, portal = hubspot_account(deps, hubspot_sim, add_account)
    hubspot_sim.uninstall(portal)  # every token dies: the check meets a 401, the refresh too
    refreshes = hubspot_sim.refresh_calls

    if path == "job":
        result = check_account(deps, account_id)
        assert (result["passed"], result["error_code"]) == (False, "connection_revoked")
    else:
        make_due(deps)
        [report] = run_due(deps, checker(deps))
        assert report["verdicts"] == {"recorded": 1}

    assert hubspot_sim.refresh_calls == refreshes + 1
    account, errors = stored(deps, account_id)
    assert account.status == "disconnected"
    # Written by the refresh that met it, and counted once.
    assert [(e.code, e.occurrences) for e in errors] == [("connection_revoked", 1)]
    assert statuses(deps, account_id) == ["connected", "disconnected"]
    if path == "batch":
        assert account.next_check_at is None  # never scheduled again


def test_ten_concurrent_checks_of_an_uninstalled_hubspot_app_disconnect_it_once(
    deps: Deps,
    hubspot_sim: HubSpotSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    account_id, portal = hubspot_account(deps, hubspot_sim, add_account)
    hubspot_sim.uninstall(portal)  # every token dies: the checks meet a 401, the refresh too
    refreshes = hubspot_sim.refresh_calls

    results = concurrent_checks(deps, connector_settings, check_account, account_id)

    assert hubspot_sim.refresh_calls == refreshes + 1
    for r in results:
        assert r["status"] == "succeeded", r
        if r["checked"]:
            assert (r["passed"], r["error_code"]) == (False, "connection_revoked")
        else:  # another check had recorded the uninstall first
            assert r["account"]["status"] == "disconnected"
    assert sum(r["checked"] for r in results) >= 1
    account, errors = stored(deps, account_id)
    assert account.status == "disconnected"
    assert [e.code for e in errors] == ["connection_revoked"]
    assert statuses(deps, account_id) == ["connected", "disconnected"]
