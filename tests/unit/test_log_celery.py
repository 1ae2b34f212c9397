"""Celery's own lines, through Celery's own code: a refused message is reported by its reason and
never by its contents, routine ticks are debug, a task's credentials are known while it runs,
neither worker nor beat prints a banner in JSON, and `--loglevel` given on the command line wins."""

from __future__ import annotations

import inspect
import io
import json
import logging
import pickle
import sys
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import click
import pytest
import structlog
from celery import signals
from celery.app import trace
from celery.apps import worker as worker_app
from celery.beat import Scheduler
from celery.bin.base import LOG_LEVEL
from celery.worker.consumer import consumer
from celery.worker.request import Request
from click.testing import CliRunner
from kombu.message import Message

from worker import celery_app
from worker.logconfig import REDACTED, configure_logging, scrub_text, secrets_known
from worker.tasks.jobtask import TASKS

KEY = "sk_live_51Habcdefghijklmnop"
CODE = "plain-oauth-code-0001"  # no shape: only the message, never the scrubber, knows it


@pytest.fixture(autouse=True)
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Where the JSON logs of the test go; the process as it was afterwards (the worker's setup
    replaces its streams, hooks and Celery's `safe_say`)."""
    root = logging.getLogger()
    saved = (sys.stdout, sys.stderr, sys.excepthook, root.handlers[:], root.level)
    monkeypatch.setattr(worker_app, "safe_say", worker_app.safe_say)
    monkeypatch.setenv("CONNECTIONS_LOG_FORMAT", "json")
    celery_app.get_settings.cache_clear()
    buffer = io.StringIO()
    logs_to(buffer, lambda: configure_logging("json", "INFO"))
    yield buffer
    sys.stdout, sys.stderr, sys.excepthook = saved[:3]
    root.handlers[:] = saved[3]
    root.setLevel(saved[4])
    logging.captureWarnings(False)
    structlog.reset_defaults()
    celery_app.get_settings.cache_clear()


def logs_to(buffer: io.StringIO, configure: Callable[[], object]) -> None:
    """Run what configures logging with `buffer` as the stderr it writes to."""
    with mock.patch.object(sys, "stderr", buffer):
        configure()


def lines(stderr: io.StringIO) -> list[dict[str, Any]]:
    """The lines written since the last call, each one JSON object."""
    text, _ = stderr.getvalue(), stderr.truncate(0)
    stderr.seek(0)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Channel:
    """Where a consumed message is acknowledged; Celery acks or rejects a refused one."""

    no_ack_consumers = None

    def __init__(self) -> None:
        self.settled: list[str] = []

    def basic_ack(self, tag: str, multiple: bool = False) -> None:
        self.settled.append(tag)

    def basic_reject(self, tag: str, requeue: bool = False) -> None:
        self.settled.append(tag)


def pickled_job() -> Message:
    """A job as another service might send it with pickle: credentials in body and headers."""
    kwargs = {"org_id": "org-1", "credentials": {"api_key": KEY, "code": CODE}}
    return Message(
        body=pickle.dumps(((), kwargs, {})),
        channel=Channel(),
        content_type="application/x-python-serialize",
        content_encoding="binary",
        delivery_tag="1",
        headers={"task": "accounts.add", "id": "t-1", "kwargsrepr": repr(kwargs)},
        accept=["json"],
    )


def test_a_refused_pickled_message_is_reported_by_its_reason_only(
    stderr: io.StringIO,
) -> None:
    message = pickled_job()
    try:
        message.decode()
    except Exception as exc:  # as kombu does: Celery's callback runs in the handler
        consumer.Consumer.on_decode_error(None, message, exc)
    (line,) = lines(stderr)
    assert line["level"] == "critical"
    assert line["event"].startswith(
        "Can't decode message body: ContentDisallowed('Refusing to deserialize untrusted content"
        " of type pickle (application/x-python-serialize)') [type:'application/x-python-"
        "serialize' encoding:'binary']; the message is discarded, its contents not logged"
    )
    assert "ContentDisallowed" in line["exception"]
    text = json.dumps(line)
    assert CODE not in text
    assert KEY not in text
    assert "kwargsrepr" not in text


class _Consumer:
    """Celery's consumer methods for an unknown message, on a consumer with nothing else."""

    connection_errors = ()
    _message_report = consumer.Consumer._message_report
    on_unknown_message = consumer.Consumer.on_unknown_message


def test_an_unknown_message_is_reported_without_its_body(
    stderr: io.StringIO,
) -> None:
    message = Message(
        body=json.dumps({"credentials": {"code": CODE}}),
        channel=Channel(),
        content_type="application/json",
        content_encoding="utf-8",
        delivery_tag="2",
        headers={"kwargsrepr": CODE},
    )
    _Consumer().on_unknown_message({"credentials": {"code": CODE}}, message)
    (line,) = lines(stderr)
    assert line["level"] == "warning"
    assert line["event"].startswith("Received and deleted unknown message. Wrong destination?!?")
    assert CODE not in json.dumps(line)


def test_every_refusal_celery_quotes_a_body_in_is_covered() -> None:
    """Each of Celery's templates that prints a body or headers has its reason-only form."""
    quoting = [
        value
        for value in vars(consumer).values()
        if isinstance(value, str) and ("body" in value and "%s" in value)
    ]
    assert quoting
    assert set(quoting) <= set(celery_app.REFUSALS)


def log_tick(msg: str, **context: Any) -> None:
    trace.info(msg, {"id": "t-1", "runtime": 0.01, **context})


def test_routine_ticks_are_debug_and_real_work_stays_info(
    stderr: io.StringIO,
) -> None:
    log_tick(trace.LOG_RECEIVED, name="events.relay")
    log_tick(trace.LOG_SUCCESS, name="events.relay", return_value="0")
    log_tick(trace.LOG_SUCCESS, name="checks.schedule", return_value="0")
    logging.getLogger("celery.beat").info(celery_app.BEAT_SENDING, "events-relay", "events.relay")
    log_tick(trace.LOG_SUCCESS, name="events.relay", return_value="12")
    log_tick(trace.LOG_SUCCESS, name="events.sweep", return_value="3")
    log_tick(trace.LOG_RECEIVED, name="events.process")
    log_tick(trace.LOG_RECEIVED, name="accounts.add")
    logging.getLogger("celery.beat").info("beat: Starting...")
    request = logging.getLogger("celery.worker.request")
    request.info(celery_app.DISCARDED, "checks.schedule", "t-2")  # expired while no worker ran
    request.info(celery_app.DISCARDED, "accounts.add", "t-3")
    assert [line["event"] for line in lines(stderr)] == [
        "Task events.relay[t-1] succeeded in 0.01s: 12",
        "Task events.sweep[t-1] succeeded in 0.01s: 3",
        "Task events.process[t-1] received",
        "Task accounts.add[t-1] received",
        "beat: Starting...",
        "Discarding revoked task: accounts.add[t-3]",
    ]


def test_routine_ticks_are_written_at_debug(stderr: io.StringIO) -> None:
    logs_to(stderr, lambda: configure_logging("json", "DEBUG"))
    log_tick(trace.LOG_SUCCESS, name="checks.schedule", return_value="0")
    logging.getLogger("celery.beat").info(celery_app.BEAT_SENDING, "checks", "checks.schedule")
    assert [(line["level"], line["logger"]) for line in lines(stderr)] == [
        ("debug", "celery.app.trace"),
        ("debug", "celery.beat"),
    ]


def test_the_tick_lines_are_the_ones_celery_writes() -> None:
    assert repr(celery_app.BEAT_SENDING) in inspect.getsource(Scheduler.apply_entry)
    assert repr(celery_app.DISCARDED) in inspect.getsource(Request.revoked)


def test_a_tasks_credentials_are_known_while_it_runs(stderr: io.StringIO) -> None:
    task = TASKS["accounts.add"]
    kwargs = {"org_id": "org-1", "credentials": {"code": CODE}}
    with secrets_known(["secret-of-the-caller"]):  # a task run eagerly inside a block
        signals.task_prerun.send(sender=task, task_id="t-9", task=task, args=(), kwargs=kwargs)
        logging.getLogger("celery.app.trace").error("Task failed: exchange of %s refused", CODE)
        signals.task_postrun.send(sender=task, task_id="t-9", task=task, args=(), kwargs=kwargs)
        assert scrub_text("secret-of-the-caller") == REDACTED
    (line,) = lines(stderr)
    assert line["event"] == f"Task failed: exchange of {REDACTED} refused"
    assert (line["task_id"], line["task"]) == ("t-9", "accounts.add")
    assert scrub_text(CODE) == CODE  # the task has ended: no longer its secret


def test_beat_prints_no_banner_when_logs_are_json() -> None:
    assert celery_app.app.Beat(quiet=False).quiet is True


def test_the_worker_prints_no_banner_and_says_its_notices_in_json(
    stderr: io.StringIO,
) -> None:
    class WorkerStub:
        quiet = False

    stub = WorkerStub()
    logs_to(
        stderr,
        lambda: signals.celeryd_init.send(sender="w@host", instance=stub, conf=None, options={}),
    )
    assert stub.quiet is True
    worker_app.safe_say("worker: Warm shutdown (MainProcess)", sys.__stdout__)
    assert lines(stderr)[-1]["event"] == "worker: Warm shutdown (MainProcess)"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [([], "WARNING"), (["--loglevel=DEBUG"], "DEBUG"), (["--loglevel=info"], "INFO")],
)
def test_loglevel_on_the_command_line_wins_over_the_setting(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str
) -> None:
    monkeypatch.setenv("CONNECTIONS_LOG_LEVEL", "WARNING")
    celery_app.get_settings.cache_clear()
    chosen: list[str] = []

    @click.command()
    @click.option("--loglevel", default="INFO", type=LOG_LEVEL)
    def beat(loglevel: int) -> None:  # celery beat's option, as `celery beat` declares it
        chosen.append(celery_app._level(loglevel))

    result = CliRunner().invoke(beat, argv)
    assert result.exit_code == 0, result.output
    assert chosen == [expected]
