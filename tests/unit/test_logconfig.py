"""No secret reaches a log line: by key name, by shape, or because a job said it is one."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from worker.logconfig import REDACTED, configure_logging, redact_secrets, secrets_known


def render(**fields: object) -> dict[str, object]:
    return dict(redact_secrets(None, "info", {"event": "e", **fields}))


@pytest.mark.parametrize(
    "key", ["api_key", "access_token", "refresh_token", "client_secret", "Authorization", "code"]
)
def test_secret_keys_are_redacted(key: str) -> None:
    assert render(**{key: "anything"})[key] == REDACTED


def test_secret_shapes_are_redacted_inside_any_value() -> None:
    out = render(
        message="failed with sk_live_abcdef123456 and whsec_abcdefgh12",
        nested={"headers": {"x": "Bearer shpat_0123456789abcdef"}},
    )
    assert "sk_live_abcdef123456" not in json.dumps(out)
    assert "whsec_abcdefgh12" not in json.dumps(out)
    assert "shpat_0123456789abcdef" not in json.dumps(out)


def test_error_codes_and_ids_are_kept() -> None:
    out = render(error_code="credentials_invalid", account_id="a1", org_id="o1", job_id="j1")
    assert out["error_code"] == "credentials_invalid"
    assert out["account_id"] == "a1"


def test_known_secrets_are_scrubbed_only_while_known() -> None:
    with secrets_known(["opaque-token-without-shape"]):
        assert "opaque" not in json.dumps(render(detail="got opaque-token-without-shape back"))
    assert "opaque" in json.dumps(render(detail="opaque-token-without-shape"))


def test_json_lines_and_stdlib_lines_carry_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    with secrets_known(["plain-secret-value"]):
        structlog.get_logger("t").info(
            "calling", url="https://x/?token=1", detail="plain-secret-value"
        )
        logging.getLogger("celery.test").warning(
            "task kwargs %s", {"api_key": "sk_test_abcdefgh99"}
        )
    err = capsys.readouterr().err
    line = json.loads(err.splitlines()[0])
    assert line["event"] == "calling"
    assert line["level"] == "info"
    assert "plain-secret-value" not in err
    assert "sk_test_abcdefgh99" not in err
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = [logging.StreamHandler(io.StringIO())]
