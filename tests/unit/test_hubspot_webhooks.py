"""HubSpot's webhooks without a network: the signature vectors of PROVIDERS-hubspot.md (checked
there with HubSpot's own library), a property that any change to what v3 covers is refused, the
timestamp window, and the batch parser with its composite event identity."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors.events import MalformedEvent, NoSecretConfigured, SignatureError
from connectors.hubspot import (
    PROVIDER,
    HubSpotSettings,
    HubSpotWebhooks,
    signed_uri,
    v1_signature,
    v3_signature,
)
from connectors.provider import WebhookRequest

SECRET = "hubspot_test_secret"
BODY = (
    b'[{"eventId":1,"subscriptionType":"contact.creation","portalId":62515,'
    b'"occurredAt":1700000000000,"objectId":123}]'
)
TS = "1700000000000"
SIGNED_AT = 1_700_000_000.0
BASE = "https://example.com"
PATH = "/webhooks/hubspot"
DOCS_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"


def webhooks(
    secret: str | None = SECRET, *, now: float = SIGNED_AT + 60, base: str = BASE, **settings: Any
) -> HubSpotWebhooks:
    config = HubSpotSettings(
        client_secret=SecretStr(secret) if secret is not None else None, **settings
    )
    return HubSpotWebhooks(config, base, clock=lambda: now)


def request(
    body: bytes = BODY,
    *,
    method: str = "POST",
    path: str = PATH,
    query: str = "",
    headers: Mapping[str, str] | None = None,
) -> WebhookRequest:
    return WebhookRequest(method, path, query, headers or {}, body)


def v3_headers(
    body: bytes = BODY,
    *,
    query: str = "",
    ts: str = TS,
    method: str = "POST",
    path: str = PATH,
    secret: str = SECRET,
) -> dict[str, str]:
    signature = v3_signature(secret, method, signed_uri(BASE, path, query), body, ts)
    return {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": ts}


# -- the vectors --------------------------------------------------------------------------------


def test_v3_vector_a() -> None:
    uri = signed_uri(BASE, PATH, "")
    assert uri == "https://example.com/webhooks/hubspot"
    assert v3_signature(SECRET, "POST", uri, BODY, TS) == (
        "AxSqi4P1e0tB4nOEjL67rK/mSCQaEvlui5kRiopLRRI="
    )
    headers = {"x-hubspot-signature-v3": "AxSqi4P1e0tB4nOEjL67rK/mSCQaEvlui5kRiopLRRI="}
    webhooks().verify(request(headers={**headers, "x-hubspot-request-timestamp": TS}))


def test_v3_vector_b_signs_the_decoded_uri() -> None:
    uri = signed_uri(BASE + "/", PATH, "x=%3A")
    assert uri == "https://example.com/webhooks/hubspot?x=:"
    decoded = v3_signature(SECRET, "POST", uri, BODY, TS)
    raw = v3_signature(SECRET, "POST", BASE + PATH + "?x=%3A", BODY, TS)
    assert decoded == "rLPfpt5YuasdidpqQ4r0U+gIUdtHWA79G0ixgvOR2Vk="
    assert raw == "kkSfhky8qmj/O1+nf8w7cCe7dLr4TsI5BKUlWEf8zhA="

    def sent(signature: str) -> WebhookRequest:
        headers = {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": TS}
        return request(query="x=%3A", headers=headers)

    webhooks().verify(sent(decoded))
    with pytest.raises(SignatureError):
        webhooks().verify(sent(raw))


def test_only_the_documented_escapes_are_decoded_once() -> None:
    query = "a=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B&b=%20%2B%26%3D%23%253A&c=%3a"
    assert signed_uri(BASE, PATH, query) == (
        BASE + PATH + "?a=:/?@!$'()*,;&b=%20%2B%26%3D%23%253A&c=%3a"
    )


def test_v1_vector_c() -> None:
    signature = v1_signature(SECRET, BODY)
    assert signature == "bfa30ca27ae792b620f6db3425f5633e5d65040a19c8376313dc6c2ef9df1077"
    headers = {"x-hubspot-signature": signature, "x-hubspot-signature-version": "v1"}
    webhooks().verify(request(headers=headers))
    with pytest.raises(SignatureError):
        webhooks().verify(request(BODY + b" ", headers=headers))


def test_the_docs_v1_vector() -> None:
    body = (
        b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
        b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
    )
    signature = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    assert v1_signature(DOCS_SECRET, body) == signature
    headers = {"x-hubspot-signature": signature, "x-hubspot-signature-version": "v1"}
    webhooks(DOCS_SECRET).verify(request(body, headers=headers))


def test_the_librarys_v3_vector() -> None:
    body = b"{'example_field':'example_value'}"
    uri = "https://www.example.com/webhook_uri"
    assert v3_signature(DOCS_SECRET, "POST", uri, body, "1693657560000") == (
        "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
    )
    assert v3_signature(DOCS_SECRET, "POST", uri, body, "15000000") == (
        "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="
    )


def test_v1_can_be_switched_off_and_v2_is_not_accepted() -> None:
    headers = {
        "x-hubspot-signature": v1_signature(SECRET, BODY),
        "x-hubspot-signature-version": "v1",
    }
    with pytest.raises(SignatureError, match="v1 is not accepted"):
        webhooks(accept_v1_signatures=False).verify(request(headers=headers))
    v2 = {**headers, "x-hubspot-signature-version": "v2"}
    with pytest.raises(SignatureError, match="v2 is not accepted"):
        webhooks().verify(request(headers=v2))


# -- what v3 covers -----------------------------------------------------------------------------

# Text that may appear in a path or query as HubSpot sends it, escapes included.
URI_TEXT = st.text(alphabet="abcXYZ019-_.~=&/:%3A2F", max_size=20)


@given(
    body=st.binary(max_size=64),
    query=URI_TEXT,
    change=st.sampled_from(["body", "path", "query", "method", "timestamp"]),
    new_body=st.binary(max_size=64),
    new_text=URI_TEXT,
    method=st.sampled_from(["PUT", "GET", "post", "PATCH"]),
    shift=st.integers(min_value=-120_000, max_value=120_000),
)
def test_any_change_to_what_v3_covers_is_refused(
    body: bytes,
    query: str,
    change: str,
    new_body: bytes,
    new_text: str,
    method: str,
    shift: int,
) -> None:
    verifier = webhooks()
    sent = request(body, query=query, headers=v3_headers(body, query=query))
    verifier.verify(sent)  # as signed: accepted
    received = {
        "body": lambda: request(new_body, query=query, headers=sent.headers),
        "path": lambda: request(
            body, path=PATH + "/" + new_text, query=query, headers=sent.headers
        ),
        "query": lambda: request(body, query=new_text, headers=sent.headers),
        "method": lambda: request(body, method=method, query=query, headers=sent.headers),
        "timestamp": lambda: request(
            body,
            query=query,
            headers={**sent.headers, "x-hubspot-request-timestamp": str(int(TS) + shift)},
        ),
    }[change]()
    # The same event written otherwise (`:` for `%3A`) is the same signed URI: not a change.
    assume(
        signed_uri(BASE, received.path, received.query) != signed_uri(BASE, PATH, query)
        or received.body != body
        or received.method != "POST"
        or received.headers != sent.headers
    )
    with pytest.raises(SignatureError):
        verifier.verify(received)


def test_a_signature_by_another_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        webhooks().verify(request(headers=v3_headers(secret="another-secret")))


def test_the_previous_secret_is_accepted_during_a_rotation() -> None:
    verifier = webhooks("new-secret", previous_client_secret=SecretStr(SECRET))
    verifier.verify(request(headers=v3_headers()))


# -- the timestamp window -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "accepted"),
    [
        (0.0, True),
        (299.999, True),
        (300.0, False),  # exactly at the limit: refused, as HubSpot's Python library does
        (301.0, False),
        (3600.0, False),
        (-30.0, True),  # ahead of our clock by the allowed skew
        (-30.001, False),
        (-3600.0, False),
    ],
)
def test_the_timestamp_must_be_within_five_minutes_and_not_ahead(
    age: float, accepted: bool
) -> None:
    verifier = webhooks(now=SIGNED_AT + age)
    sent = request(headers=v3_headers())
    if accepted:
        verifier.verify(sent)
    else:
        with pytest.raises(SignatureError, match="too old|in the future"):
            verifier.verify(sent)


@pytest.mark.parametrize("ts", [None, "", "17e11", "-1700000000000", "１７００", "1" * 17])
def test_a_missing_or_odd_timestamp_is_refused(ts: str | None) -> None:
    headers = v3_headers()
    if ts is None:
        del headers["x-hubspot-request-timestamp"]
    else:
        headers["x-hubspot-request-timestamp"] = ts
    with pytest.raises(SignatureError, match="Timestamp"):
        webhooks().verify(request(headers=headers))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-hubspot-signature-v3": "not base64!", "x-hubspot-request-timestamp": TS},
        {"x-hubspot-signature": "abc"},  # no version
    ],
)
def test_missing_or_malformed_signatures_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        webhooks().verify(request(headers=headers))


def test_no_secret_configured_refuses_everything() -> None:
    with pytest.raises(NoSecretConfigured):
        webhooks(None).verify(request(headers=v3_headers()))
    with pytest.raises(NoSecretConfigured):
        webhooks("").verify(request(headers=v3_headers()))


def test_no_public_base_url_refuses_v3() -> None:
    with pytest.raises(NoSecretConfigured, match="PUBLIC_BASE_URL"):
        webhooks(base="").verify(request(headers=v3_headers()))


def test_the_provider_builds_its_webhooks_from_settings_and_public_url() -> None:
    assert PROVIDER.webhooks is not None
    built = PROVIDER.webhooks(HubSpotSettings(client_secret=SecretStr(SECRET)), BASE)
    with pytest.raises(SignatureError, match="too old"):  # the real clock: years later
        built.verify(request(headers=v3_headers()))


# -- parsing a batch ----------------------------------------------------------------------------


def event(**fields: Any) -> dict[str, Any]:
    base = {
        "eventId": 100,
        "subscriptionId": 12345,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1700000000000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 123,
        "changeSource": "CRM",
        "propertyName": "email",
        "propertyValue": "a@example.com",
    }
    return {**base, **fields}


def parse(batch: Any) -> list[Any]:
    return webhooks().parse(request(json.dumps(batch).encode()))


def test_a_batch_becomes_one_event_each() -> None:
    other = event(subscriptionId=777, subscriptionType="contact.creation")
    events = parse([event(), event(objectId=124), other])
    assert len({e.event_id for e in events}) == 3
    first = events[0]
    assert first.provider == "hubspot"
    assert first.topic == "contact.propertyChange"
    assert first.route_key == "62515"
    assert first.occurred_at is not None
    assert first.occurred_at.timestamp() == 1_700_000_000
    assert first.payload == event()


def test_a_repeated_event_inside_one_batch_gives_one_id() -> None:
    events = parse([event(), event(objectId=124), event(), event(attemptNumber=3)])
    assert [e.payload["objectId"] for e in events] == [123, 124]


def test_attempt_number_does_not_change_the_id() -> None:
    assert (
        parse([event(attemptNumber=0)])[0].event_id == parse([event(attemptNumber=4)])[0].event_id
    )


@pytest.mark.parametrize(
    "field",
    ["portalId", "subscriptionId", "eventId", "objectId", "occurredAt", "propertyName"],
)
def test_each_identity_field_changes_the_id(field: str) -> None:
    changed = {field: 99999} if field != "propertyName" else {field: "phone"}
    assert parse([event()])[0].event_id != parse([event(**changed)])[0].event_id


def test_the_property_value_is_part_of_the_id_and_event_id_is_not_unique() -> None:
    # HubSpot's eventId repeats across events: the other fields keep them apart.
    one, two = parse([event(propertyValue="a@example.com"), event(propertyValue="b@example.com")])
    assert one.event_id != two.event_id


def test_a_portal_id_as_text_is_the_same_portal() -> None:
    assert parse([event(portalId="62515")])[0].event_id == parse([event()])[0].event_id


def test_a_hundred_events_are_taken() -> None:
    assert len(parse([event(objectId=i) for i in range(100)])) == 100


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"eventId": 1}', "not a JSON array"),
        (b"[]", "no events"),
        (json.dumps([event(objectId=i) for i in range(101)]).encode(), "at most 100"),
        (b"[1]", "not a JSON object"),
        (json.dumps([event(portalId=None)]).encode(), "portalId"),
        (json.dumps([event(portalId=True)]).encode(), "portalId"),
        (json.dumps([event(portalId="hub")]).encode(), "portalId"),
        (json.dumps([event(subscriptionType="")]).encode(), "subscriptionType"),
        (json.dumps([event(eventId=None)]).encode(), "eventId"),
        (json.dumps([event(), event(subscriptionType="x" * 300)]).encode(), "longer than"),
        (json.dumps([event(propertyValue="a\u0000b")]).encode(), "NUL"),
    ],
)
def test_bad_shapes_are_malformed(body: bytes, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        webhooks().parse(request(body))


def test_an_unusable_occurred_at_is_no_time() -> None:
    for value in (None, "yesterday", -5, True, 2**60):
        assert parse([event(occurredAt=value)])[0].occurred_at is None


def test_the_limit_of_events_is_a_setting() -> None:
    verifier = webhooks(max_events_per_request=2)
    with pytest.raises(MalformedEvent, match="at most 2"):
        verifier.parse(request(json.dumps([event(objectId=i) for i in range(3)]).encode()))
