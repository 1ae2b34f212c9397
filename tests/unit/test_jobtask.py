"""Arguments a job does not know are refused as `invalid`, naming each one."""

from __future__ import annotations

import pytest

from worker.service.outcomes import Reason, Rejected
from worker.tasks.jobtask import unknown_arguments


def test_unknown_arguments_are_named() -> None:
    work = unknown_arguments({"colour": "blue", "size": 3})
    assert work is not None
    with pytest.raises(Rejected) as caught:
        work(None)
    assert caught.value.reason is Reason.INVALID
    assert caught.value.extra["fields"] == {
        "colour": "not an argument of this job",
        "size": "not an argument of this job",
    }


def test_no_unknown_arguments_means_no_override() -> None:
    assert unknown_arguments({}) is None
