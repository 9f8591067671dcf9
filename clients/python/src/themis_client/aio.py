"""The asynchronous client: ``AsyncClient``, ``AsyncRun`` and ``AsyncResults``, the
same operations as the sync client, awaited (iterators are ``async for``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Self, Unpack

import httpx
from httpx_sse import aconnect_sse

from . import _datasets as ds
from . import _protocol as api
from . import models as m
from ._frame import records_to_frame
from ._shared import ClientBase, ResultsQuery, RunHandle, RunRef
from .errors import ThemisError


class AsyncClient(ClientBase[httpx.AsyncClient]):
    """The async twin of ``Client`` (same arguments); ``async with`` or ``aclose()``."""

    def _open(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(**options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: api.Call) -> httpx.Response:
        try:
            return api.checked(await self._http.request(**call.kwargs()))
        except httpx.TransportError as error:
            raise ThemisError.from_transport(error) from error

    async def _run(self, call: api.Call) -> AsyncRun:
        response = await self._send(call)
        return AsyncRun(self, api.load(response, m.RunView), created=response.status_code == 202)

    async def _pages(
        self, make_call: Callable[[str | None], api.Call], page_model: Any, items: str
    ) -> AsyncIterator[Any]:
        cursor: str | None = None
        while True:
            page = api.load(await self._send(make_call(cursor)), page_model)
            for item in getattr(page, items):
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def create_run(self, definition: Mapping[str, Any]) -> AsyncRun:
        return await self._run(api.create_run(definition))

    async def get_run(self, run_id: str, *, include_definition: bool = False) -> AsyncRun:
        return await self._run(api.get_run(run_id, include_definition=include_definition))

    async def list_runs(
        self, *, status: str | None = None, parent_run_id: str | None = None, page_size: int = 50
    ) -> AsyncIterator[AsyncRun]:
        pages = self._pages(lambda c: api.list_runs(status, parent_run_id, page_size, c), m.RunPage, "runs")
        async for view in pages:
            yield AsyncRun(self, view)

    async def compare(self, candidate: RunRef, baseline: RunRef) -> m.CompareReport:
        call = api.compare(api.run_id_of(candidate), api.run_id_of(baseline))
        return api.load(await self._send(call), m.CompareReport)

    async def compare_markdown(self, candidate: RunRef, baseline: RunRef) -> str:
        call = api.compare(api.run_id_of(candidate), api.run_id_of(baseline), "markdown")
        return (await self._send(call)).text

    def changed_cases(
        self,
        candidate: RunRef,
        baseline: RunRef,
        **options: Unpack[api.ChangedCasesFilter],
    ) -> AsyncIterator[m.ChangedCase]:
        ids = api.run_id_of(candidate), api.run_id_of(baseline)
        return self._pages(lambda c: api.changed_cases(*ids, options, c), m.ChangedCasesPage, "cases")

    async def compare_runs(self, runs: Sequence[RunRef]) -> m.RunsTable:
        table = await self._send(api.compare_runs([api.run_id_of(r) for r in runs]))
        return api.load(table, m.RunsTable)

    async def put_dataset(
        self,
        dataset_id: str,
        source: ds.DatasetSource,
        format: ds.DatasetFormat | None = None,
        **columns: Unpack[ds.CsvColumns],
    ) -> m.UploadedRevision:
        call = ds.upload(dataset_id, source, format, columns)
        if not isinstance(call.content, bytes):
            call = call.with_content(_off_the_loop(call.content))
        return ds.uploaded(await self._send(call))

    def datasets(self, *, page_size: int = 50) -> AsyncIterator[m.DatasetSummary]:
        return self._pages(lambda c: ds.list_datasets(page_size, c), m.DatasetPage, "datasets")

    def dataset(self, dataset_id: str, *, page_size: int = 50) -> AsyncIterator[m.DatasetRevision]:
        return self._pages(lambda c: ds.revisions(dataset_id, page_size, c), m.RevisionPage, "revisions")

    def dataset_cases(
        self, dataset_id: str, revision: str | None = None, *, page_size: int = 100
    ) -> AsyncIterator[m.StoredCase]:
        return self._pages(lambda c: ds.cases(dataset_id, revision, page_size, c), m.CasePage, "cases")

    async def delete_dataset_revision(self, dataset_id: str, revision: str) -> m.DeletedRevisions:
        return api.load(await self._send(ds.delete(dataset_id, revision)), m.DeletedRevisions)

    async def delete_dataset(self, dataset_id: str) -> m.DeletedRevisions:
        return api.load(await self._send(ds.delete(dataset_id, None)), m.DeletedRevisions)


async def _off_the_loop(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """An upload's chunks, each read (file) or encoded (cases) in a worker thread so
    the event loop never waits on them."""
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


class AsyncRun(RunHandle[AsyncClient]):
    """The async twin of ``Run``."""

    async def refresh(self) -> AsyncRun:
        self.view = (await self.client.get_run(self.run_id)).view
        return self

    def events(self, after: int | None = None) -> AsyncIterator[m.RunEvent]:
        return self._follow(after, self.client.max_reconnects, None)

    async def _follow(
        self, after: int | None, max_failures: int, deadline: api.Deadline | None
    ) -> AsyncGenerator[m.RunEvent]:
        follower = api.EventFollower(self.run_id, after, max_failures)
        while not follower.finished:
            try:
                async with aconnect_sse(self.client._http, **follower.stream_options(deadline)) as source:
                    if source.response.status_code != 200:
                        await source.response.aread()
                        raise ThemisError.from_response(source.response)
                    async for sse in source.aiter_sse():
                        if (event := follower.accept(sse.data)) is not None:
                            yield event
                if follower.ended_cleanly((await self.client.get_run(self.run_id)).view):
                    return
                error = api.stream_ended()
            except httpx.TransportError as transport:
                error = ThemisError.from_transport(transport)
            except ThemisError as refused:
                error = refused
            await asyncio.sleep(follower.failed(error))

    async def wait(self, timeout: float | None = None, *, poll_interval: float = 0.5) -> AsyncRun:
        deadline = api.Deadline(timeout, self.run_id)
        try:
            async with aclosing(self._follow(None, 0, deadline)) as events:
                async for _ in events:
                    deadline.check()
            return await self.refresh()
        except ThemisError as error:
            if not error.retryable:
                raise
        poll = api.Poll(self.run_id)
        while (view := poll.finished(await self.client._send(poll.call()))) is None:
            await asyncio.sleep(deadline.pause(poll_interval))
        self.view = view
        return self

    def results(
        self, dataset_id: str | None = None, failed_only: bool = False, *, page_size: int = 100
    ) -> AsyncResults:
        return AsyncResults(self, dataset_id, failed_only, page_size)

    async def rejudge(
        self, evaluation: Mapping[str, Any] | None = None, **fields: Unpack[api.RejudgeFields]
    ) -> AsyncRun:
        return await self.client._run(api.rejudge(self.run_id, evaluation, fields))

    async def cancel(self) -> AsyncRun:
        self.view = (await self.client._run(api.cancel(self.run_id))).view
        return self

    async def retry(self) -> AsyncRun:
        return await self.client._run(api.retry(self.run_id))

    async def delete(self, cascade: bool = False) -> list[str]:
        deleted = await self.client._send(api.delete_run(self.run_id, cascade))
        return api.load(deleted, m.DeletedRuns).deleted

    async def compare(self, baseline: RunRef) -> m.CompareReport:
        return await self.client.compare(self, baseline)


class AsyncResults(ResultsQuery[AsyncRun]):
    """``async for record in run.results()``; ``await results.to_pandas()``."""

    def __aiter__(self) -> AsyncIterator[m.CaseRecord]:
        return self.run.client._pages(self.call, m.ResultsPage, "results")

    async def to_pandas(self) -> Any:
        return records_to_frame([record async for record in self])
