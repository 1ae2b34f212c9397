"""A simulator runs a Starlette app under uvicorn in a thread, on a free port, and can be told to
answer the next calls with failures (a status code, slowness, a hang) before behaving again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bench.processes import free_port

__all__ = ["ServerThread", "free_port", "oauth_error"]


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    """An OAuth 2 error answer, as the providers' token endpoints send them."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=2048,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Answer:
    """A scripted answer: `status` with `body` and `headers`, after `delay` seconds."""

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    path: str | None = None  # only for requests to this path


class Script:
    """Scripted answers taken in order by matching requests; then the simulator behaves."""

    def __init__(self) -> None:
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self.latency = 0.0

    def push(self, answer: Answer, times: int = 1) -> None:
        with self._lock:
            self._answers.extend([answer] * times)

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
            self.latency = 0.0

    def take(self, path: str) -> Answer | None:
        with self._lock:
            for i, answer in enumerate(self._answers):
                if answer.path is None or answer.path == path:
                    del self._answers[i]
                    return answer
        return None

    async def intercept(self, request: Request) -> Response | None:
        """The scripted answer for this request, if any, after the configured latency."""
        if self.latency:
            await asyncio.sleep(self.latency)
        answer = self.take(request.url.path)
        if answer is None:
            return None
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.body is None:
            return Response(status_code=answer.status, headers=answer.headers)
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


class Simulator:
    """Base of every provider simulator: a server, a script, and a log of calls."""

    def __init__(self) -> None:
        self.script = Script()
        self.calls: list[tuple[str, str]] = []
        self._calls_lock = threading.Lock()
        self.server = ServerThread(self.app())

    def app(self) -> Starlette:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Simulator:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def reset(self) -> None:
        """Between tests: no scripted answers, no recorded calls (subclasses add defaults)."""
        self.script.clear()
        with self._calls_lock:
            self.calls.clear()

    def record(self, request: Request) -> None:
        with self._calls_lock:
            self.calls.append((request.method, request.url.path))

    def count(self, path: str, method: str | None = None) -> int:
        with self._calls_lock:
            return sum(1 for m, p in self.calls if p == path and (method is None or m == method))

    def fail_next(self, status: int, times: int = 1, **kwargs: Any) -> None:
        self.script.push(Answer(status=status, **kwargs), times)
