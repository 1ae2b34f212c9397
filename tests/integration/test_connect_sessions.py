"""Connect sessions through a real ingest server against the provider simulators, with an HTTP
client following the links as a browser would: create a session, open the authorize page at the
simulator, follow its approve link to the callback, land on the return URL (or the result page).
The callback's job runs in-process here (`run_as_job`); tests/e2e/test_connect.py runs it on a
real worker.

The helpers at the top (`Browser`, `Upstreams`) are shared with the end-to-end test."""

from __future__ import annotations

import html
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from models import Account, ConnectSession, Database, Job, utc_now
from models.clock import set_clock
from tests.simulators.base import ServerThread, free_port
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.hubspot import HubSpotSimulator
from tests.simulators.shopify import ShopifySimulator
from tests.simulators.stripe import StripeSimulator
from worker.api.app import create_app
from worker.service.deps import Deps
from worker.settings import Settings
from worker.tasks.table import run_as_job

TOKEN = "connect-sessions-token-for-tests"
RETURN_PREFIX = "https://app.standout.test/accounts"
ADMIN = {"user_id": "u-admin", "role": "admin"}
COLLABORATOR = {"user_id": "u-collab", "role": "collaborator"}
READER = {"user_id": "u-reader", "role": "reader"}
OAUTH_TYPES = ("shopify", "stripe", "fortnox", "hubspot")
LINK = re.compile(r'<a id="(?:approve|authorize)" href="([^"]*)"')


# -- shared with the end-to-end test -----------------------------------------------------------


class Api:
    """The ingest's connect-session API as the front end's back end calls it."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def create(self, org: str, body: Any, actor: dict[str, str] = ADMIN) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v1/orgs/{org}/connect-sessions",
            json=body,
            headers=self.headers(actor),
            timeout=30,
        )

    def read(self, org: str, session_id: str, actor: dict[str, str] = ADMIN) -> httpx.Response:
        return httpx.get(
            f"{self.url}/api/v1/orgs/{org}/connect-sessions/{session_id}",
            headers=self.headers(actor),
            timeout=30,
        )

    def headers(self, actor: dict[str, str]) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Actor-Id": actor["user_id"],
            "X-Actor-Role": actor["role"],
        }


class Browser:
    """Follows the links a person would click; stops at the return URL (the front end's)."""

    def __init__(self) -> None:
        self.client = httpx.Client(timeout=60, follow_redirects=False)
        self.callback_url = ""

    def authorize(self, authorize_url: str) -> str:
        """Open the provider's authorize page; the URL its approve (or deny) link leads to."""
        page = self.client.get(authorize_url)
        assert page.status_code == 200, page.text
        found = LINK.search(page.text)
        assert found is not None, page.text
        self.callback_url = html.unescape(found.group(1))
        return self.callback_url

    def back(self, callback_url: str | None = None) -> httpx.Response:
        """Arrive at the callback (again, when given the same URL)."""
        return self.client.get(callback_url or self.callback_url)

    def connect(self, authorize_url: str) -> httpx.Response:
        self.authorize(authorize_url)
        return self.back()

    def code(self) -> str:
        return dict(parse_qsl(urlsplit(self.callback_url).query)).get("code", "")


def landed(answer: httpx.Response) -> dict[str, str]:
    """The 303 to the return URL: its query (session and status), after checking its address."""
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(RETURN_PREFIX), location
    return dict(parse_qsl(urlsplit(location).query))


def assert_nothing_secret(answer: httpx.Response, code: str) -> None:
    """No code in the page or in the URL the ingest sent the browser to."""
    assert code
    assert code not in answer.text
    assert code not in answer.headers.get("location", "")
    assert answer.headers["referrer-policy"] == "no-referrer"


@dataclass
class Upstreams:
    """The upstream accounts at the simulators, and who the next authorization grants."""

    shopify: ShopifySimulator
    stripe: StripeSimulator
    fortnox: FortnoxSimulator
    hubspot: HubSpotSimulator

    def new(self, type_: str) -> tuple[str, dict[str, Any]]:
        """A new upstream account the next authorization of `type_` grants: (its identity, what
        the session body must say to reach it)."""
        if type_ == "shopify":
            shop = self.shopify.add_shop("Acme Shop")
            return shop, {"shop_domain": shop}
        if type_ == "stripe":
            account_id, _ = self.stripe.add_account("Acme Payments AB")
            self.stripe.authorize_as(account_id)
            return account_id, {}
        if type_ == "fortnox":
            tenant = self.fortnox.add_tenant("Acme Books AB")
            self.fortnox.authorizing = tenant
            return tenant.organization_number, {}
        portal = self.hubspot.add_portal()
        self.hubspot.authorizing = portal
        return str(portal.id), {}

    def again(self, type_: str, identity: str) -> None:
        """The next authorization grants `identity` again (a Shopify session names its shop)."""
        if type_ == "stripe":
            self.stripe.authorize_as(identity)
        elif type_ == "fortnox":
            self.fortnox.authorizing = next(
                t for t in self.fortnox.tenants.values() if t.organization_number == identity
            )
        elif type_ == "hubspot":
            self.hubspot.authorizing = self.hubspot.portals[int(identity)]

    def deny(self, type_: str) -> None:
        """The next authorize page sends the browser back with `error=access_denied`."""
        if type_ == "stripe":
            self.stripe.deny_next("The user denied your request")
        elif type_ == "fortnox":
            self.fortnox.deny_authorizations = True
        elif type_ == "hubspot":
            self.hubspot.deny_authorizations = True
        else:
            raise AssertionError(f"the {type_} simulator cannot refuse")


# -- this tier's fixtures ----------------------------------------------------------------------


@dataclass
class Ingest:
    url: str
    api: Api
    sent: list[str]  # the names of the jobs the callback queued


@contextmanager
def serving(
    database_url: str, deps: Deps, send_job: Callable[[Any], None] | None = None
) -> Iterator[Ingest]:
    """The real ingest app on a real server at PUBLIC_BASE_URL, whose callback runs its job
    in-process the way the worker's task runs it (or hands it to `send_job`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        database_url=database_url,
        service_token=SecretStr(TOKEN),
        public_base_url=url,
        connect_return_urls=RETURN_PREFIX,
    )
    sent: list[str] = []

    def run_now(order: Any) -> None:
        sent.append(order.name)
        run_as_job(deps, order.name, order.kwargs, job_id=order.job_id)

    app = create_app(settings, deps, enqueue=lambda _ids: None, send_job=send_job or run_now)
    server = ServerThread(app, port=port).start()
    try:
        yield Ingest(url, Api(url, TOKEN), sent)
    finally:
        server.stop()


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


def start(ingest: Ingest, type_: str, extra: dict[str, Any], **body: Any) -> dict[str, Any]:
    answer = ingest.api.create("org-1", {"type": type_, "name": f"My {type_}", **extra, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


def accounts(db: Database) -> list[Account]:
    with db.unit_of_work() as s:
        found = list(s.scalars(select(Account).order_by(Account.created_at)))
        s.expunge_all()
    return found


def stored_session(db: Database, session_id: str) -> ConnectSession:
    with db.unit_of_work() as s:
        row = s.get(ConnectSession, uuid.UUID(session_id))
        assert row is not None
        s.expunge(row)
    return row


# -- a full connect, per provider --------------------------------------------------------------


@pytest.mark.parametrize("type_", OAUTH_TYPES)
def test_a_full_connect_adds_the_account_and_returns_the_browser(
    type_: str, ingest: Ingest, upstreams: Upstreams, db: Database, deps: Deps
) -> None:
    identity, extra = upstreams.new(type_)
    session = start(ingest, type_, extra, return_url=RETURN_PREFIX + "/new?tab=connect")
    assert session["authorize_url"].count("state=") == 1

    browser = Browser()
    callback = browser.authorize(session["authorize_url"])
    assert callback.startswith(f"{ingest.url}/connect/{type_}/callback?")
    answer = browser.back()

    back = landed(answer)
    assert back == {"tab": "connect", "session": session["id"], "status": "succeeded"}
    assert_nothing_secret(answer, browser.code())

    read = ingest.api.read("org-1", session["id"])
    assert read.status_code == 200
    view = read.json()
    assert set(view) == {"id", "type", "status", "reason", "message", "job_id", "account"}
    assert (view["type"], view["status"], view["reason"]) == (type_, "succeeded", None)
    (account,) = accounts(db)
    assert view["account"]["id"] == str(account.id)
    assert view["account"]["name"] == f"My {type_}"
    assert (account.org_id, account.type, account.status) == ("org-1", type_, "connected")
    connector = deps.connectors.get(type_)
    assert connector.identity(account.connection, account.meta) == identity
    assert ingest.sent == ["accounts.add"]
    with db.unit_of_work() as s:
        job = s.get(Job, view["job_id"])
        assert job is not None
        assert (job.name, job.request_id, job.org_id) == ("accounts.add", session["id"], "org-1")


def test_without_a_return_url_the_browser_gets_a_page_saying_what_happened(
    ingest: Ingest, upstreams: Upstreams
) -> None:
    _, extra = upstreams.new("hubspot")
    session = start(ingest, "hubspot", extra, name="Sales CRM")
    browser = Browser()
    answer = browser.connect(session["authorize_url"])
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "Sales CRM is connected" in answer.text
    assert_nothing_secret(answer, browser.code())


def test_a_collaborator_may_connect(ingest: Ingest, upstreams: Upstreams, db: Database) -> None:
    _, extra = upstreams.new("fortnox")
    created = ingest.api.create(
        "org-1", {"type": "fortnox", "name": "Books", **extra}, COLLABORATOR
    )
    assert created.status_code == 201
    Browser().connect(created.json()["authorize_url"])
    assert [a.status for a in accounts(db)] == ["connected"]


# -- once only ---------------------------------------------------------------------------------


def test_reloading_the_callback_makes_one_account(
    ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new("stripe")
    session = start(ingest, "stripe", extra, return_url=RETURN_PREFIX)
    browser = Browser()
    first = browser.connect(session["authorize_url"])
    assert landed(first)["status"] == "succeeded"

    for _ in range(2):
        again = browser.back()
        assert again.status_code == 400
        assert "already used" in again.text
        assert_nothing_secret(again, browser.code())
    assert len(accounts(db)) == 1
    assert ingest.sent == ["accounts.add"]
    assert ingest.api.read("org-1", session["id"]).json()["status"] == "succeeded"


def test_two_loads_at_once_have_one_effect(
    ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new("fortnox")
    session = start(ingest, "fortnox", extra)
    browser = Browser()
    callback = browser.authorize(session["authorize_url"])
    answers: list[int] = []
    barrier = threading.Barrier(4)

    def load() -> None:
        barrier.wait()
        answers.append(httpx.get(callback, timeout=60).status_code)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 400, 400, 400]
    assert len(accounts(db)) == 1
    assert ingest.sent == ["accounts.add"]


# -- who may --------------------------------------------------------------------------------------


def test_a_reader_cannot_create_a_session(ingest: Ingest, db: Database) -> None:
    answer = ingest.api.create("org-1", {"type": "stripe", "name": "x"}, READER)
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"
    with db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(ConnectSession)) == 0


def test_without_the_service_token_nothing_is_answered(ingest: Ingest) -> None:
    wrong = Api(ingest.url, "not-the-token")
    assert wrong.create("org-1", {"type": "stripe", "name": "x"}).status_code == 401
    assert wrong.read("org-1", str(uuid.uuid4())).status_code == 401


def test_another_orgs_session_is_not_found(ingest: Ingest, upstreams: Upstreams) -> None:
    _, extra = upstreams.new("stripe")
    session = start(ingest, "stripe", extra)
    assert ingest.api.read("org-2", session["id"]).status_code == 404
    assert ingest.api.read("org-1", "not-a-session").status_code == 404
    assert ingest.api.read("org-1", str(uuid.uuid4())).status_code == 404


def test_a_session_is_pending_until_used_and_expired_after(
    ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    _, extra = upstreams.new("hubspot")
    session = start(ingest, "hubspot", extra, return_url=RETURN_PREFIX)
    assert ingest.api.read("org-1", session["id"]).json()["status"] == "pending"
    browser = Browser()
    browser.authorize(session["authorize_url"])
    later = utc_now() + timedelta(minutes=11)
    set_clock(lambda: later)
    try:
        assert ingest.api.read("org-1", session["id"]).json()["status"] == "expired"
        answer = browser.back()
    finally:
        set_clock(None)
    assert answer.status_code == 400
    assert "expired" in answer.text
    assert accounts(db) == []
    assert stored_session(db, session["id"]).used_at is None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (
            {"type": "stripe", "name": "x", "return_url": "https://evil.test/accounts"},
            400,
            "return_url",
        ),
        ({"type": "stripe", "name": "x", "account_id": str(uuid.uuid4())}, 404, None),
        ({"type": "shopify", "name": "x"}, 400, "shop_domain"),
        ({"type": "stripe", "name": "x", "surprise": 1}, 400, "surprise"),
    ],
)
def test_bad_requests_are_refused_and_store_nothing(
    ingest: Ingest, db: Database, body: dict[str, Any], status: int, field: str | None
) -> None:
    answer = ingest.api.create("org-1", body)
    assert answer.status_code == status, answer.text
    if field is not None:
        assert field in answer.json()["fields"]
    with db.unit_of_work() as s:
        assert s.scalar(select(func.count()).select_from(ConnectSession)) == 0


def test_a_body_that_is_not_json_is_invalid(ingest: Ingest) -> None:
    answer = httpx.post(
        f"{ingest.url}/api/v1/orgs/org-1/connect-sessions",
        content=b"{not json",
        headers=ingest.api.headers(ADMIN),
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid"
