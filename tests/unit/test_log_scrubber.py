"""The scrubber finds secrets wherever they sit in a line (no word boundaries needed), knows every
SecretStr of the settings for the process's life and a job's credentials for its run, and leaves
the rest of the line, ids and error codes included, as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from connectors.registry import PROVIDERS
from worker import logconfig
from worker.logconfig import (
    REDACTED,
    redact_secrets,
    remember_secrets,
    scrub_text,
    secret_values,
    secrets_known,
)
from worker.settings import Settings, get_settings

KEY = "sk_live_51HabcdefGHIJKLmnop"


@pytest.fixture(autouse=True)
def fresh_secrets() -> Iterator[None]:
    saved = logconfig._process_secrets
    logconfig._process_secrets = ()
    yield
    logconfig._process_secrets = saved


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("x" + KEY, KEY),  # glued to a word character: no boundary before it
        (KEY + "xyz", KEY),
        ("token=" + KEY, KEY),
        ("token=sk_test_abcdefgh99&next=1", "sk_test_abcdefgh99"),
        (f"b'\\x80\\x04\\x95\\x8c\\x1b{KEY}\\x94'", KEY),  # the repr of a pickled body
        ("rk_test_0000aaaa1111 restricted", "rk_test_0000aaaa1111"),
        ("whsec_ABCDEF123456+/= signing", "whsec_ABCDEF123456"),
        ("X-Shopify-Access-Token: shpat_0123456789abcdef", "shpat_0123456789abcdef"),
        ('{"access_token":"opaque-AbC123","expires_in":3600}', "opaque-AbC123"),
        ('{\\"access_token\\": \\"opaque-AbC123\\"}', "opaque-AbC123"),  # JSON in JSON
        ("{'client_secret': 'opaque-AbC123'}", "opaque-AbC123"),  # a dict's repr
        ("GET /oauth/callback?code=oauth-code-777&shop=a.myshopify.com", "oauth-code-777"),
        ("POST /x?hmac=abcdef0123456789&state=s", "abcdef0123456789"),
        ("Authorization: Bearer opaque.token-value_1", "opaque.token-value_1"),
        ("redis://:p4ss-w0rd@127.0.0.1:6379/0", "p4ss-w0rd"),
        ("postgresql://app:p4ss-w0rd@db/connections", "p4ss-w0rd"),
        ("jwt eyJhbGciOiJSUzI1NiJ9.eyJ0ZW5hbnQiOjF9.c2lnbmF0dXJl", "eyJhbGciOiJSUzI1NiJ9"),
        ("hubspot pat-na1-0123abcd-4567-89ef-0123-456789abcdef", "pat-na1-0123abcd"),
        ("password: hunter2-long", "hunter2-long"),
        ("X-Api-Key: opaque-9876543", "opaque-9876543"),
    ],
)
def test_a_secret_is_found_wherever_it_sits(text: str, secret: str) -> None:
    scrubbed = scrub_text(text)
    assert secret not in scrubbed
    assert REDACTED in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "Task checks.schedule[c4296808-98f3-49f9-80ee-c3e80b355869] succeeded in 0.05s: 0",
        "error_code=credentials_invalid status_code=401 reason=rejected",
        "the access token expired; refresh token rotated",
        '"token_type": "bearer", "expires_in": 3600',
        f'{{"api_key": "{REDACTED}"}}',
        "account a3f1c2d4-0000-4000-8000-000000000001 of org org-1 connected",
    ],
)
def test_the_rest_of_the_line_is_left_alone(text: str) -> None:
    assert scrub_text(text) == text


@pytest.mark.parametrize(
    "secret", ['quote"and\\backslash', "plus+slash/equals=", "naïve-ünïcode-sécret", "new\nline"]
)
def test_a_known_secret_is_found_escaped_or_encoded(secret: str) -> None:
    from urllib.parse import quote, quote_plus

    with secrets_known([secret]):
        for text in (secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], quote(secret, safe="")):
            assert scrub_text(f"<{text}>") == f"<{REDACTED}>"
        assert scrub_text(f"a={quote_plus(secret)}") == f"a={REDACTED}"
        rendered = json.dumps(redact_secrets(None, "info", {"event": "e", "body": secret}))
        assert secret not in rendered
        assert json.dumps(secret)[1:-1] not in rendered


def test_a_longer_secret_is_removed_before_a_secret_inside_it() -> None:
    with secrets_known(["abcd", "abcdefgh-whole"]):
        assert scrub_text("x abcdefgh-whole y") == f"x {REDACTED} y"


def test_a_json_line_stays_json_whatever_is_redacted() -> None:
    with secrets_known(['odd"secret\\value']):
        event = redact_secrets(
            None,
            "info",
            {
                "event": 'got {"code": 1234, "token": "odd\\"secret\\\\value"} back',
                "nested": {"x-code": 5, "list": ['odd"secret\\value', KEY]},
                "count": 3,
            },
        )
    line = json.dumps(event)
    assert json.loads(line)["count"] == 3
    assert KEY not in line
    assert "secret" not in line  # neither the secret nor any escaped form of it


def test_job_arguments_give_their_credentials_and_nothing_else() -> None:
    kwargs: dict[str, Any] = {
        "org_id": "org-1",
        "actor": {"user_id": "u-1", "role": "admin"},
        "type": "shopify",
        "credentials": {"shop": "acme.myshopify.com", "code": "oauth-code-1", "hmac": "ff00"},
        "settings": {"webhook_secret": "whsec_plain", "label": "x"},
        "request_id": "r-1",
    }
    assert sorted(secret_values(kwargs)) == [
        "acme.myshopify.com",
        "ff00",
        "oauth-code-1",
        "whsec_plain",
    ]
    assert secret_values({"event_ids": ["a", "b"]}) == []


def test_blocks_nest_and_each_forgets_only_its_own() -> None:
    with secrets_known(["outer-secret"]):
        with secrets_known(secret_values({"credentials": {"code": "plain-oauth-code"}})):
            assert scrub_text("outer-secret plain-oauth-code") == f"{REDACTED} {REDACTED}"
        assert scrub_text("outer-secret plain-oauth-code") == f"{REDACTED} plain-oauth-code"
    assert scrub_text("outer-secret") == "outer-secret"


def _secret_fields(model: type[Any]) -> list[str]:
    return [name for name, f in model.model_fields.items() if "SecretStr" in str(f.annotation)]


def test_every_secret_setting_is_known_for_the_process_life(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every SecretStr field of the core settings and of every provider's settings class, read
    from its environment variable; a comma-separated list also item by item."""
    given: list[str] = []
    classes: list[type[BaseSettings]] = [Settings, *(p.settings for p in PROVIDERS.values())]
    for cls in classes:
        prefix = cls.model_config.get("env_prefix", "")
        for field in _secret_fields(cls):
            value = f"{cls.__name__}-{field}-value".lower()
            given.append(value)
            monkeypatch.setenv(f"{prefix}{field}".upper(), f"{value},{value}-second")
    assert len(given) >= 9  # the service token, encryption keys, and each provider's secrets
    get_settings.cache_clear()
    try:
        remember_secrets(logconfig._process_settings_secrets())
    finally:
        get_settings.cache_clear()
    for value in given:
        assert scrub_text(f"<{value}>") == f"<{REDACTED}>", value
        assert scrub_text(f"<{value}-second>") == f"<{REDACTED}>", value
        with secrets_known(["another"]):
            assert value not in scrub_text(f"still known inside a block: {value}")
    assert scrub_text("stripe webhook config") == "stripe webhook config"


def test_a_secret_str_is_a_secret_wherever_it_is() -> None:
    assert secret_values([SecretStr("abcd,efgh"), "not-secret", SecretStr("")]) == [
        "abcd,efgh",
        "abcd",
        "efgh",
        "",
    ]
