"""The callback refuses what it cannot trust with a plain page and changes nothing (a forged,
tampered or foreign state, a Shopify callback whose signature, age or shop is wrong, an answer
with neither code nor error); a provider's refusal ends the session `rejected`; the job's own
refusal and an unreachable queue end it too; a job slower than the wait settles on read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from models import Database
from tests.integration.test_connect_sessions import (
    RETURN_PREFIX,
    Browser,
    Ingest,
    Upstreams,
    accounts,
    assert_nothing_secret,
    landed,
    serving,
    start,
    stored_session,
)
from tests.simulators.base import Answer
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.hubspot import HubSpotSimulator
from tests.simulators.shopify import ShopifySimulator
from tests.simulators.stripe import StripeSimulator
from worker.api import connect as connect_api
from worker.service.connect_callback import JobOrder
from worker.service.deps import Deps
from worker.tasks.table import run_as_job


def with_query(url: str, **changes: str | None) -> str:
    """`url` with query parameters replaced (None: removed), keeping their order."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in changes.items():
        if value is None:
            query.pop(name, None)
        else:
            query[name] = value
    return parts._replace(query=urlencode(query)).geturl()


def assert_untouched(db: Database, session_id: str) -> None:
    row = stored_session(db, session_id)
    assert (row.status, row.used_at, row.job_id, row.reason) == ("pending", None, None, None)
    assert accounts(db) == []


def assert_still_usable(browser: Browser, callback: str, db: Database) -> None:
    """The real callback still works after the refused ones: they changed nothing."""
    answer = browser.back(callback)
    assert answer.status_code in (200, 303), answer.text
    assert [a.status for a in accounts(db)] == ["connected"]


def refused_page(answer: httpx.Response, words: str) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert words in answer.text


# -- states that cannot be trusted --------------------------------------------------------------


def test_a_forged_or_tampered_state_is_refused_and_changes_nothing(
    ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new("fortnox")
    session = start(ingest, "fortnox", extra)
    browser = Browser()
    callback = browser.authorize(session["authorize_url"])
    state = dict(parse_qsl(urlsplit(callback).query))["state"]
    version, session_hex, expires, mac = state.split(".")
    forgeries = {
        "not made by us": f"{version}.{session_hex}.{expires}.{'A' * len(mac)}",
        "later expiry": f"{version}.{session_hex}.{int(expires) + 3600}.{mac}",
        "other session": f"{version}.{uuid.uuid4().hex}.{expires}.{mac}",
        "garbage": "state-of-the-art",
    }
    for why, forged in forgeries.items():
        answer = browser.back(with_query(callback, state=forged))
        assert answer.status_code == 400, why
        assert "Start connecting again" in answer.text, why
    refused_page(browser.back(with_query(callback, state=None)), "not a valid connect link")
    assert_untouched(db, session["id"])
    assert_still_usable(browser, callback, db)


def test_a_state_brought_to_another_types_callback_is_refused(
    ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new("hubspot")
    session = start(ingest, "hubspot", extra)
    browser = Browser()
    callback = browser.authorize(session["authorize_url"])
    elsewhere = callback.replace("/connect/hubspot/", "/connect/fortnox/")
    refused_page(browser.back(elsewhere), "for another service")
    assert_untouched(db, session["id"])
    assert_still_usable(browser, callback, db)


def test_a_callback_with_neither_code_nor_error_is_refused(
    ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new("stripe")
    session = start(ingest, "stripe", extra)
    browser = Browser()
    callback = browser.authorize(session["authorize_url"])
    refused_page(browser.back(with_query(callback, code=None)), "no authorization code")
    refused_page(browser.back(callback + "&code=again"), "malformed")
    assert_untouched(db, session["id"])
    assert_still_usable(browser, callback, db)


def test_unknown_types_and_heads_run_nothing(
    ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new("stripe")
    session = start(ingest, "stripe", extra)
    browser = Browser()
    callback = browser.authorize(session["authorize_url"])
    assert browser.client.head(callback).status_code == 405
    unknown = callback.replace("/connect/stripe/", "/connect/ebay/")
    assert browser.back(unknown).status_code == 404
    assert_untouched(db, session["id"])
    assert_still_usable(browser, callback, db)


# -- Shopify's own signature --------------------------------------------------------------------


def test_shopify_callbacks_must_carry_shopifys_signature_fresh_and_for_the_shop(
    ingest: Ingest, upstreams: Upstreams, shopify_sim: ShopifySimulator, db: Database
) -> None:
    shop, extra = upstreams.new("shopify")
    session = start(ingest, "shopify", extra)
    browser = Browser()
    callback = browser.authorize(session["authorize_url"])
    query = dict(parse_qsl(urlsplit(callback).query))
    base = f"{ingest.url}/connect/shopify/callback?"
    other_shop = shopify_sim.add_shop("Other Shop")
    bad = {
        "hmac altered": with_query(callback, hmac="0" * 64),
        "no hmac": with_query(callback, hmac=None),
        "parameter added": callback + "&extra=1",
        "signed with another secret": base
        + urlencode(
            shopify_sim.callback_query(
                shop, query["code"], state=query["state"], secret="not-the-secret"
            )
        ),
        "signed long ago": base
        + urlencode(
            shopify_sim.callback_query(
                shop, query["code"], state=query["state"], timestamp=int(query["timestamp"]) - 600
            )
        ),
        "another shop": base
        + urlencode(
            shopify_sim.callback_query(
                other_shop, shopify_sim.issue_code(other_shop), state=query["state"]
            )
        ),
    }
    for why, url in bad.items():
        answer = browser.back(url)
        assert answer.status_code == 400, why
        assert "Start" in answer.text or "start" in answer.text, why
    assert_untouched(db, session["id"])
    assert_still_usable(browser, callback, db)


# -- how sessions end other than in success -----------------------------------------------------


@pytest.mark.parametrize("type_", ["stripe", "fortnox", "hubspot"])
def test_the_providers_access_denied_ends_the_session_rejected(
    type_: str, ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new(type_)
    upstreams.deny(type_)
    session = start(ingest, type_, extra, return_url=RETURN_PREFIX)
    browser = Browser()
    callback = browser.authorize(session["authorize_url"])
    assert "error=access_denied" in callback
    description = dict(parse_qsl(urlsplit(callback).query))["error_description"]

    assert landed(browser.back())["status"] == "rejected"
    view = ingest.api.read("org-1", session["id"]).json()
    assert (view["status"], view["reason"], view["job_id"], view["account"]) == (
        "rejected",
        "authorization_failed",
        None,
        None,
    )
    assert description in view["message"]
    assert ingest.sent == []
    assert accounts(db) == []
    refused_page(browser.back(), "already used")


def test_a_refused_denial_without_a_return_url_shows_the_message(
    ingest: Ingest, upstreams: Upstreams
) -> None:
    _, extra = upstreams.new("hubspot")
    upstreams.deny("hubspot")
    session = start(ingest, "hubspot", extra)
    answer = Browser().connect(session["authorize_url"])
    assert answer.status_code == 200
    assert "HubSpot did not authorize the connection" in answer.text
    assert "declined to install" in answer.text


def test_the_jobs_refusal_ends_the_session_with_its_reason(
    ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new("stripe")
    session = start(ingest, "stripe", extra)
    upstreams.stripe.script.push(
        Answer(400, {"error": "invalid_grant", "error_description": "used"}, path="/oauth/token")
    )
    browser = Browser()
    answer = browser.connect(session["authorize_url"])
    assert answer.status_code == 200
    assert "Not connected" in answer.text
    assert_nothing_secret(answer, browser.code())
    view = ingest.api.read("org-1", session["id"]).json()
    assert (view["status"], view["reason"], view["account"]) == (
        "rejected",
        "authorization_failed",
        None,
    )
    assert view["message"] in answer.text
    assert accounts(db) == []


class Queue:
    """A job queue that holds what it is sent (the test runs it), or is down."""

    def __init__(self) -> None:
        self.down = False
        self.orders: list[JobOrder] = []

    def send(self, order: JobOrder) -> None:
        if self.down:
            raise ConnectionRefusedError("the broker is down")
        self.orders.append(order)


@pytest.fixture
def upstreams(
    shopify_sim: ShopifySimulator,
    stripe_sim: StripeSimulator,
    fortnox_sim: FortnoxSimulator,
    hubspot_sim: HubSpotSimulator,
) -> Upstreams:
    return Upstreams(shopify_sim, stripe_sim, fortnox_sim, hubspot_sim)


@pytest.fixture
def ingest(database_url: str, deps: Deps) -> Iterator[Ingest]:
    with serving(database_url, deps) as served:
        yield served


@pytest.fixture
def held(
    database_url: str, deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Ingest, Queue]]:
    """An ingest whose queue holds the jobs, and waits for them only briefly."""
    monkeypatch.setattr(connect_api, "CALLBACK_WAIT_SECONDS", 0.3)
    queue = Queue()
    with serving(database_url, deps, queue.send) as served:
        yield served, queue


def test_a_job_slower_than_the_wait_is_settled_when_the_session_is_read(
    held: tuple[Ingest, Queue], upstreams: Upstreams, deps: Deps, db: Database
) -> None:
    ingest, queue = held
    _, extra = upstreams.new("fortnox")
    session = start(ingest, "fortnox", extra, return_url=RETURN_PREFIX)
    assert landed(Browser().connect(session["authorize_url"]))["status"] == "pending"
    (order,) = queue.orders
    assert order.name == "accounts.add"
    assert "code" not in str(order.kwargs)  # the code went sealed
    view = ingest.api.read("org-1", session["id"]).json()
    assert (view["status"], view["job_id"]) == ("pending", order.job_id)

    run_as_job(deps, order.name, order.kwargs, job_id=order.job_id)  # the worker gets to it
    view = ingest.api.read("org-1", session["id"]).json()
    assert view["status"] == "succeeded"
    assert view["account"]["id"] == str(accounts(db)[0].id)


def test_an_unreachable_queue_ends_the_session_failed(
    held: tuple[Ingest, Queue], upstreams: Upstreams, db: Database
) -> None:
    ingest, queue = held
    queue.down = True
    _, extra = upstreams.new("hubspot")
    session = start(ingest, "hubspot", extra)
    answer = Browser().connect(session["authorize_url"])
    assert answer.status_code == 200
    assert "could not be queued" in answer.text
    view = ingest.api.read("org-1", session["id"]).json()
    assert view["status"] == "failed"
    assert accounts(db) == []
