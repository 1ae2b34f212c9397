"""No secret reaches a log line: by key name, by shape, or because a job said it is one; and every
line, structlog's or a library's, is one JSON object when the format is JSON."""

from __future__ import annotations

import json
import logging
import logging.config
import sys
import warnings
from collections.abc import Iterator

import pytest
import structlog
import uvicorn

from worker.logconfig import (
    REDACTED,
    configure_logging,
    redact_secrets,
    secrets_known,
    uvicorn_log_config,
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes the process: its streams, hooks and root logger; undone here."""
    root = logging.getLogger()
    saved = (sys.stdout, sys.stderr, sys.excepthook, root.handlers[:], root.level)
    yield
    sys.stdout, sys.stderr, sys.excepthook = saved[:3]
    root.handlers[:] = saved[3]
    root.setLevel(saved[4])
    logging.captureWarnings(False)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def render(**fields: object) -> dict[str, object]:
    return dict(redact_secrets(None, "info", {"event": "e", **fields}))


def json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line, each of which must be one JSON object."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines), lines
    return lines


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


def test_secret_keys_are_redacted_at_any_depth() -> None:
    out = render(response={"data": [{"access_token": "opaque-value-123", "id": "a1"}]})
    assert out["response"] == {"data": [{"access_token": REDACTED, "id": "a1"}]}


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


def test_library_lines_are_json_objects_with_the_bound_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "INFO")
    structlog.contextvars.bind_contextvars(task_id="t-1", org_id="org-1")
    logging.getLogger("celery.app.trace").info("Task %s[%s] succeeded", "accounts.add", "t-1")
    logging.getLogger("uvicorn.error").warning("Child process [%d] died", 42)
    structlog.get_logger("worker.tasks.jobtask").info("job_finished", status="succeeded")
    logging.getLogger("celery.worker").debug("below the level: not written")
    trace, uvicorn_line, ours = json_lines(capsys.readouterr().err)
    assert trace["event"] == "Task accounts.add[t-1] succeeded"
    assert (trace["level"], trace["logger"]) == ("info", "celery.app.trace")
    assert (uvicorn_line["event"], uvicorn_line["level"]) == ("Child process [42] died", "warning")
    assert (ours["event"], ours["logger"], ours["status"]) == (
        "job_finished",
        "worker.tasks.jobtask",
        "succeeded",
    )
    for line in (trace, uvicorn_line, ours):
        assert (line["task_id"], line["org_id"]) == ("t-1", "org-1")
        assert "timestamp" in line


def test_an_exception_is_one_json_line_without_the_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "INFO")
    try:
        raise RuntimeError("provider refused api_key=opaque-key-0001 and sk_live_0123456789ab")
    except RuntimeError:
        structlog.get_logger("t").exception("call_failed")
        logging.getLogger("kombu").exception("library failed too")
    err = capsys.readouterr().err
    ours, library = json_lines(err)
    assert "Traceback" in str(ours["exception"])
    assert "RuntimeError" in str(library["exception"])
    assert "opaque-key-0001" not in err
    assert "sk_live_0123456789ab" not in err


def test_values_json_cannot_hold_are_written_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    structlog.get_logger("t").warning("failed", error=ValueError("bad token=opaque-0123456789"))
    (line,) = json_lines(capsys.readouterr().err)
    assert line["error"] == f"ValueError('bad token={REDACTED}')"


def test_console_lines_are_scrubbed_traceback_included(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("console", "INFO")
    with secrets_known(["console-only-secret"]):
        try:
            raise RuntimeError("console-only-secret sk_test_abcdefgh99")
        except RuntimeError:
            structlog.get_logger("t").exception("failed")
            logging.getLogger("celery").error("also %s", "console-only-secret", exc_info=True)
    err = capsys.readouterr().err
    assert "failed" in err
    assert "RuntimeError" in err
    assert "console-only-secret" not in err
    assert "sk_test_abcdefgh99" not in err


def test_a_server_process_prints_warns_and_fails_in_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "INFO", whole_process=True)
    print("a task printed sk_live_0123456789ab")
    print("half a line, ", end="")
    print("then the rest")
    sys.stderr.write("a library wrote to stderr\n")
    logging.captureWarnings(True)  # pytest's own warning capture must not intercept this one
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated api_key=opaque-0000000001", DeprecationWarning, stacklevel=1)
    try:
        raise KeyError("uncaught")
    except KeyError:
        sys.excepthook(*sys.exc_info())
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = json_lines(captured.err)
    events = [str(line["event"]) for line in lines]
    assert events[:4] == [
        f"a task printed {REDACTED}",
        "half a line, then the rest",
        "a library wrote to stderr",
        events[3],
    ]
    assert "DeprecationWarning" in events[3]
    assert lines[4]["event"] == "uncaught"
    assert "KeyError" in str(lines[4]["exception"])
    assert "opaque-0000000001" not in captured.err


def test_uvicorn_logs_through_the_root_handler_in_each_server_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What uvicorn itself does in every process, the spawned `--workers` children included.
    uvicorn.Config("worker.api.app:create_app", log_config=uvicorn_log_config("json", "INFO"))
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", "/callback?code=oauth-code-1234", "1.1", 200
    )
    structlog.get_logger("worker.api.webhooks").warning("webhook_refused", provider="stripe")
    started, access, ours = json_lines(capsys.readouterr().err)
    assert started["event"] == "Started server process [7]"
    assert access["event"] == f'127.0.0.1 - "GET /callback?code={REDACTED} HTTP/1.1" 200'
    assert ours["event"] == "webhook_refused"
