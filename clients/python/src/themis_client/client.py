"""The synchronous client: ``Client``, its ``Run`` handles and paged ``Results``."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import closing
from typing import Any, Self, Unpack

import httpx
from httpx_sse import connect_sse

from . import _datasets as ds
from . import _protocol as api
from . import models as m
from ._frame import records_to_frame
from ._shared import ClientBase, ResultsQuery, RunHandle, RunRef
from .errors import ThemisError


class Client(ClientBase[httpx.Client]):
    """A connection to a Themis service (see ``ClientBase`` for the arguments). Every
    failure raises ``ThemisError``. Use it as a context manager, or call ``close()``."""

    def _open(self, **options: Any) -> httpx.Client:
        return httpx.Client(**options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: api.Call) -> httpx.Response:
        try:
            return api.checked(self._http.request(**call.kwargs()))
        except httpx.TransportError as error:
            raise ThemisError.from_transport(error) from error

    def _run(self, call: api.Call) -> Run:
        response = self._send(call)
        return Run(self, api.load(response, m.RunView), created=response.status_code == 202)

    def _pages(
        self, make_call: Callable[[str | None], api.Call], page_model: Any, items: str
    ) -> Iterator[Any]:
        cursor: str | None = None
        while True:
            page = api.load(self._send(make_call(cursor)), page_model)
            yield from getattr(page, items)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def create_run(self, definition: Mapping[str, Any]) -> Run:
        """Creates the run of an experiment definition, or finds it: the same
        definition is the same run (``run.created`` tells which)."""
        return self._run(api.create_run(definition))

    def get_run(self, run_id: str, *, include_definition: bool = False) -> Run:
        return self._run(api.get_run(run_id, include_definition=include_definition))

    def list_runs(
        self, *, status: str | None = None, parent_run_id: str | None = None, page_size: int = 50
    ) -> Iterator[Run]:
        """Every run (or those with ``status``, or the rejudges of ``parent_run_id``),
        newest first, fetched a page at a time."""
        views = self._pages(lambda c: api.list_runs(status, parent_run_id, page_size, c), m.RunPage, "runs")
        return (Run(self, view) for view in views)

    def compare(self, candidate: RunRef, baseline: RunRef) -> m.CompareReport:
        """Paired comparison of ``candidate`` against ``baseline``."""
        call = api.compare(api.run_id_of(candidate), api.run_id_of(baseline))
        return api.load(self._send(call), m.CompareReport)

    def compare_markdown(self, candidate: RunRef, baseline: RunRef) -> str:
        call = api.compare(api.run_id_of(candidate), api.run_id_of(baseline), "markdown")
        return self._send(call).text

    def changed_cases(
        self,
        candidate: RunRef,
        baseline: RunRef,
        **options: Unpack[api.ChangedCasesFilter],
    ) -> Iterator[m.ChangedCase]:
        """Cases whose score changed against ``baseline``, in case order."""
        ids = api.run_id_of(candidate), api.run_id_of(baseline)
        return self._pages(lambda c: api.changed_cases(*ids, options, c), m.ChangedCasesPage, "cases")

    def compare_runs(self, runs: Sequence[RunRef]) -> m.RunsTable:
        """Means of several runs and paired deltas against the first (Holm-adjusted)."""
        return api.load(self._send(api.compare_runs([api.run_id_of(r) for r in runs])), m.RunsTable)

    def put_dataset(
        self,
        dataset_id: str,
        source: ds.DatasetSource,
        format: ds.DatasetFormat | None = None,
        **columns: Unpack[ds.CsvColumns],
    ) -> m.UploadedRevision:
        """Uploads a revision of ``dataset_id``, streamed: a JSONL or CSV file (format
        from its suffix unless ``format`` says), bytes with ``format``, or an iterable
        of case dicts (sent as JSONL). CSV columns map with ``case_id=``, ``input=``,
        ``expected_output=``, ``metadata=``. The same content is the same revision
        (``created`` is then False)."""
        return ds.uploaded(self._send(ds.upload(dataset_id, source, format, columns)))

    def datasets(self, *, page_size: int = 50) -> Iterator[m.DatasetSummary]:
        """Every dataset, in id order, with its newest revision."""
        return self._pages(lambda c: ds.list_datasets(page_size, c), m.DatasetPage, "datasets")

    def dataset(self, dataset_id: str, *, page_size: int = 50) -> Iterator[m.DatasetRevision]:
        """The revisions of ``dataset_id``, newest first."""
        return self._pages(lambda c: ds.revisions(dataset_id, page_size, c), m.RevisionPage, "revisions")

    def dataset_cases(
        self, dataset_id: str, revision: str | None = None, *, page_size: int = 100
    ) -> Iterator[m.StoredCase]:
        """The cases of a revision (default: the newest), in order, a page at a time."""
        return self._pages(lambda c: ds.cases(dataset_id, revision, page_size, c), m.CasePage, "cases")

    def delete_dataset_revision(self, dataset_id: str, revision: str) -> m.DeletedRevisions:
        """Deletes one revision; while runs use it, ``ThemisError`` ``conflict`` whose
        ``run_ids`` names them."""
        return api.load(self._send(ds.delete(dataset_id, revision)), m.DeletedRevisions)

    def delete_dataset(self, dataset_id: str) -> m.DeletedRevisions:
        """Deletes every revision of ``dataset_id`` (refused like one revision)."""
        return api.load(self._send(ds.delete(dataset_id, None)), m.DeletedRevisions)


class Run(RunHandle[Client]):
    """A run on the service. ``view`` is what was last fetched; ``refresh()`` and
    ``wait()`` fetch it again."""

    def refresh(self) -> Run:
        self.view = self.client.get_run(self.run_id).view
        return self

    def events(self, after: int | None = None) -> Iterator[m.RunEvent]:
        """Every event after ``after`` (from the start by default), history then live,
        ending with the terminal event. A dropped connection is resumed with
        ``Last-Event-ID``: nothing is missed or repeated."""
        return self._follow(after, self.client.max_reconnects, None)

    def _follow(
        self, after: int | None, max_failures: int, deadline: api.Deadline | None
    ) -> Generator[m.RunEvent]:
        follower = api.EventFollower(self.run_id, after, max_failures)
        while not follower.finished:
            try:
                with connect_sse(self.client._http, **follower.stream_options(deadline)) as source:
                    if source.response.status_code != 200:
                        source.response.read()
                        raise ThemisError.from_response(source.response)
                    for sse in source.iter_sse():
                        if (event := follower.accept(sse.data)) is not None:
                            yield event
                if follower.ended_cleanly(self.client.get_run(self.run_id).view):
                    return
                error = api.stream_ended()
            except httpx.TransportError as transport:
                error = ThemisError.from_transport(transport)
            except ThemisError as refused:
                error = refused
            time.sleep(follower.failed(error))

    def wait(self, timeout: float | None = None, *, poll_interval: float = 0.5) -> Run:
        """Blocks until the run finishes, following its events; when the stream is
        refused or breaks, polls ``GET /runs/{id}`` (with its ETag) instead. Raises
        ``ThemisError`` (code ``timeout``) after ``timeout`` seconds."""
        deadline = api.Deadline(timeout, self.run_id)
        try:
            with closing(self._follow(None, 0, deadline)) as events:
                for _ in events:
                    deadline.check()
            return self.refresh()
        except ThemisError as error:
            if not error.retryable:
                raise
        poll = api.Poll(self.run_id)
        while (view := poll.finished(self.client._send(poll.call()))) is None:
            time.sleep(deadline.pause(poll_interval))
        self.view = view
        return self

    def results(
        self, dataset_id: str | None = None, failed_only: bool = False, *, page_size: int = 100
    ) -> Results:
        """The case records, in case order, fetched a page at a time as you iterate."""
        return Results(self, dataset_id, failed_only, page_size)

    def rejudge(
        self, evaluation: Mapping[str, Any] | None = None, **fields: Unpack[api.RejudgeFields]
    ) -> Run:
        """A new evaluation of this run's stored generations (``evaluation`` whole, or
        ``parsers=``, ``metrics=``, ``judges=``): a run of its own, and the same request
        again finds the same rejudge."""
        return self.client._run(api.rejudge(self.run_id, evaluation, fields))

    def cancel(self) -> Run:
        """Cancels the run (a finished run is left as it is)."""
        self.view = self.client._run(api.cancel(self.run_id)).view
        return self

    def retry(self) -> Run:
        """A run of kind ``retry`` that reuses this finished run's completed cases and
        executes its failed ones again; the same request again finds it."""
        return self.client._run(api.retry(self.run_id))

    def delete(self, cascade: bool = False) -> list[str]:
        """Deletes this finished run (with ``cascade``, the runs derived from it too);
        returns the ids deleted. Refused (``conflict``, ``run_ids``) while it runs or,
        without ``cascade``, has derived runs."""
        return api.load(self.client._send(api.delete_run(self.run_id, cascade)), m.DeletedRuns).deleted

    def compare(self, baseline: RunRef) -> m.CompareReport:
        return self.client.compare(self, baseline)


class Results(ResultsQuery[Run]):
    """The case records of a run: iterate (pages are fetched as needed) or
    ``to_pandas()`` (needs the ``pandas`` extra)."""

    def __iter__(self) -> Iterator[m.CaseRecord]:
        return self.run.client._pages(self.call, m.ResultsPage, "results")

    def to_pandas(self) -> Any:
        return records_to_frame(self)
