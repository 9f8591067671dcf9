"""What the sync and async flavours of the client objects share: the client's
settings, a run handle's fields and a results query. The I/O is theirs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import httpx

from . import _protocol as api
from .models import MetricAggregate, Progress, RunKind, RunStatus, RunView, Usage


class ClientBase[H: (httpx.Client, httpx.AsyncClient)](ABC):
    """``base_url`` defaults to ``THEMIS_URL`` (else ``http://127.0.0.1:8080``) and
    ``api_key`` to ``THEMIS_API_KEY``; ``timeout`` is per request (event streams wait
    longer between events); ``max_reconnects`` bounds reconnects of an event stream in
    a row; ``transport`` replaces httpx's (tests, proxies)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_reconnects: int = api.MAX_RECONNECTS,
        transport: Any = None,
    ) -> None:
        self.max_reconnects = max_reconnects
        self._http: H = self._open(transport=transport, **api.http_options(base_url, api_key, timeout))

    @abstractmethod
    def _open(self, **options: Any) -> H:
        """The httpx client (sync or async) with these options."""

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)


class RunHandle[C]:
    """A run on the service through ``client``: the last view fetched (``view``) and
    its fields. ``created`` tells whether the request that returned it created the run
    (``202``) or found an existing one (``200``: the same definition is the same run)."""

    def __init__(self, client: C, view: RunView, *, created: bool = False) -> None:
        self.client = client
        self.view = view
        self.created = created

    @property
    def run_id(self) -> str:
        return self.view.run_id

    @property
    def kind(self) -> RunKind:
        return self.view.kind

    @property
    def parent_run_id(self) -> str | None:
        return self.view.parent_run_id

    @property
    def status(self) -> RunStatus:
        return self.view.status

    @property
    def progress(self) -> Progress:
        return self.view.progress

    @property
    def usage(self) -> Usage:
        return self.view.usage

    @property
    def aggregates(self) -> dict[str, MetricAggregate]:
        return self.view.aggregates

    @property
    def error(self) -> str | None:
        return self.view.error

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.run_id} {self.kind.value} {self.status.value}>"


type RunRef = RunHandle[Any] | str
"""A run given by its handle or its id."""


class ResultsQuery[R: RunHandle[Any]]:
    """The case records of ``run`` (of one dataset, or failed only), paged."""

    def __init__(self, run: R, dataset_id: str | None, failed_only: bool, page_size: int) -> None:
        self.run = run
        self.dataset_id = dataset_id
        self.failed_only = failed_only
        self.page_size = page_size

    def call(self, cursor: str | None) -> api.Call:
        return api.results(self.run.run_id, self.dataset_id, self.failed_only, self.page_size, cursor)
