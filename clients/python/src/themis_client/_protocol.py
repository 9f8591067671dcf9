"""What the sync and async clients share: the requests of each endpoint, reading
answers, and the decisions of paging, following events and waiting. No I/O here: the
clients send the requests and sleep; this module says what to send and when to stop."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, cast
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from .errors import TIMEOUT, UNEXPECTED_RESPONSE, ThemisError
from .models import RunEvent, RunView

DEFAULT_URL = "http://127.0.0.1:8080"
# Longer than the service's 15 s keep-alive, so a silent stream means a dead one.
STREAM_READ_TIMEOUT = 30.0
# Reconnects of an event stream in a row (without an event between) before giving up.
MAX_RECONNECTS = 8


def http_options(base_url: str | None, api_key: str | None, timeout: float) -> dict[str, Any]:
    """Options of the ``httpx`` client; ``THEMIS_URL`` / ``THEMIS_API_KEY`` fill in
    what is not given."""
    base = base_url or os.environ.get("THEMIS_URL") or DEFAULT_URL
    key = api_key if api_key is not None else os.environ.get("THEMIS_API_KEY")
    headers = {"user-agent": "themis-client-python"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return {"base_url": base.rstrip("/"), "headers": headers, "timeout": timeout}


@dataclass(frozen=True)
class Call:
    """One request to the API, relative to the base URL."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed body (an upload): bytes, or chunks made on demand.
    content: Any = None

    def kwargs(self) -> dict[str, Any]:
        body = {"content": self.content} if self.content is not None else {"json": self.json}
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "headers": self.headers,
            **body,
        }

    def with_content(self, content: Any) -> Call:
        return replace(self, content=content)


def _run_path(run_id: str, tail: str = "") -> str:
    return f"/runs/{quote(run_id, safe='')}{tail}"


def _query(**values: Any) -> dict[str, str]:
    """Query parameters that are set, as the API spells them."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None or value is False:
            continue
        out[name] = "true" if value is True else str(value)
    return out


def create_run(definition: Mapping[str, Any]) -> Call:
    return Call("POST", "/runs", json=dict(definition))


def get_run(run_id: str, *, include_definition: bool = False, etag: str | None = None) -> Call:
    params = _query(include="definition" if include_definition else None)
    headers = {"if-none-match": etag} if etag else {}
    return Call("GET", _run_path(run_id), params=params, headers=headers)


def list_runs(status: str | None, parent_run_id: str | None, limit: int, cursor: str | None) -> Call:
    params = _query(status=status, parent_run_id=parent_run_id, limit=limit, cursor=cursor)
    return Call("GET", "/runs", params=params)


def results(run_id: str, dataset_id: str | None, failed_only: bool, limit: int, cursor: str | None) -> Call:
    params = _query(dataset_id=dataset_id, failed_only=failed_only, limit=limit, cursor=cursor)
    return Call("GET", _run_path(run_id, "/results"), params=params)


def cancel(run_id: str) -> Call:
    return Call("POST", _run_path(run_id, "/cancel"))


def retry(run_id: str) -> Call:
    return Call("POST", _run_path(run_id, "/retry"))


def delete_run(run_id: str, cascade: bool) -> Call:
    return Call("DELETE", _run_path(run_id), params=_query(cascade=cascade))


class RejudgeFields(TypedDict, total=False):
    """What a rejudge may give besides a whole ``evaluation``: its lists one by one,
    and runtime-only fields (see ``RejudgeRequest`` in ``openapi.yaml``)."""

    parsers: Sequence[Any]
    metrics: Sequence[Any]
    judges: Sequence[Any]
    concurrency: int
    cache: bool
    failure_policy: Mapping[str, Any]
    tracing: Mapping[str, Any]
    subscribers: Sequence[Mapping[str, Any]]


_EVALUATION_LISTS = ("parsers", "metrics", "judges")


def rejudge(run_id: str, evaluation: Mapping[str, Any] | None, fields: RejudgeFields) -> Call:
    body: dict[str, Any] = dict(evaluation or {})
    runtime: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _EVALUATION_LISTS:
            body[name] = list(cast(Sequence[Any], value))
        else:
            runtime[name] = value
    return Call("POST", _run_path(run_id, "/rejudge"), json={"evaluation": body, **runtime})


def compare(candidate: str, baseline: str, fmt: str = "json") -> Call:
    return Call("GET", _run_path(candidate, "/compare"), params=_query(baseline=baseline, format=fmt))


class ChangedCasesFilter(TypedDict, total=False):
    """Which changed cases: ``filter`` ``regressed``, ``improved`` or ``changed`` (the
    default), only ``metric`` (a metric or judge id), ``page_size`` per request."""

    filter: str
    metric: str
    page_size: int


def changed_cases(candidate: str, baseline: str, options: ChangedCasesFilter, cursor: str | None) -> Call:
    params = _query(
        baseline=baseline,
        filter=options.get("filter"),
        metric=options.get("metric"),
        limit=options.get("page_size"),
        cursor=cursor,
    )
    return Call("GET", _run_path(candidate, "/compare/cases"), params=params)


def compare_runs(run_ids: Sequence[str], fmt: str = "json") -> Call:
    return Call("GET", "/compare", params=_query(runs=",".join(run_ids), format=fmt))


def checked(response: httpx.Response) -> httpx.Response:
    """The response if it is a success (or a 304); its ``ThemisError`` otherwise. The
    body must have been read."""
    if response.is_success or response.status_code == 304:
        return response
    raise ThemisError.from_response(response)


def load[M: BaseModel](response: httpx.Response, model: type[M]) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValueError as error:
        raise ThemisError.from_response(response) from error


def run_id_of(run: Any) -> str:
    """A run id from a run handle, a view or the id itself."""
    return run if isinstance(run, str) else str(run.run_id)


class EventFollower:
    """Where an event stream is, and what to do when it breaks: resume after the last
    event received (``Last-Event-ID``), skip anything already seen, stop after the
    terminal event, back off between reconnects and give up after ``max_failures`` in a
    row."""

    def __init__(self, run_id: str, after: int | None, max_failures: int) -> None:
        self.run_id = run_id
        self.last = after or 0
        self.finished = False
        self.max_failures = max_failures
        self.failures = 0

    def call(self) -> Call:
        headers = {"last-event-id": str(self.last)} if self.last else {}
        return Call("GET", _run_path(self.run_id, "/events"), headers=headers)

    def stream_options(self, deadline: Deadline | None) -> dict[str, Any]:
        """Keyword arguments of ``connect_sse`` / ``aconnect_sse`` after the client."""
        timeout = deadline.stream_timeout() if deadline else httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT)
        call = self.call()
        return {"method": "GET", "url": call.path, "headers": dict(call.headers), "timeout": timeout}

    def accept(self, data: str) -> RunEvent | None:
        """The event in an SSE ``data`` field, or None for one already delivered."""
        try:
            event = RunEvent.model_validate_json(data)
        except ValueError as error:
            raise ThemisError(UNEXPECTED_RESPONSE, f"an event that is not a RunEvent: {error}") from error
        self.failures = 0
        if event.seq <= self.last:
            return None
        self.last = event.seq
        self.finished = event.is_terminal
        return event

    def ended_cleanly(self, run: RunView) -> bool:
        """The stream ended without a terminal event: done if the run has finished and
        nothing is left after what was received (a resume point past its end)."""
        self.finished = run.status.is_terminal and run.last_event_seq <= self.last
        return self.finished

    def failed(self, error: ThemisError) -> float:
        """Seconds to wait before reconnecting; re-raises ``error`` when it is not worth
        retrying or too many attempts failed in a row."""
        self.failures += 1
        if not error.retryable or self.failures > self.max_failures:
            raise error
        backoff = min(5.0, 0.1 * 2.0 ** (self.failures - 1)) * random.uniform(0.5, 1.0)
        return max(backoff, min(error.retry_after or 0.0, 30.0))


def stream_ended() -> ThemisError:
    return ThemisError("unavailable", "the event stream ended before the run did")


class Poll:
    """``Run.wait`` without an event stream: ``GET /runs/{id}`` again and again, with
    the last ETag, until the run is finished."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.etag: str | None = None
        self.view: RunView | None = None

    def call(self) -> Call:
        return get_run(self.run_id, etag=self.etag)

    def finished(self, response: httpx.Response) -> RunView | None:
        """The run's view once this answer shows it finished (a 304 changes nothing)."""
        if response.status_code != 304:
            self.etag = response.headers.get("etag")
            self.view = load(response, RunView)
        return self.view if self.view is not None and self.view.status.is_terminal else None


class Deadline:
    """``Run.wait``'s time limit (None: no limit)."""

    def __init__(self, timeout: float | None, run_id: str) -> None:
        self.run_id = run_id
        self.end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def check(self) -> None:
        if self.end is not None and time.monotonic() >= self.end:
            raise ThemisError(TIMEOUT, f"run {self.run_id} did not finish in time")

    def stream_timeout(self) -> httpx.Timeout:
        left = self.remaining()
        read = STREAM_READ_TIMEOUT if left is None else min(STREAM_READ_TIMEOUT, left + 0.01)
        return httpx.Timeout(10.0, read=read)

    def pause(self, interval: float) -> float:
        """How long to sleep before the next poll; raises once time is up."""
        self.check()
        left = self.remaining()
        return interval if left is None else min(interval, left)
