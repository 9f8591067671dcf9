"""The sync client against the real service: create, events, paging, rejudge, cancel,
comparisons and error mapping."""

from __future__ import annotations

import pytest

from support import CuttingProxy, RecordingTransport, ThemisServer, demo_definition
from themis_client import Client, RunKind, RunStatus, ThemisError


def test_create_is_idempotent_and_wait_returns_the_finished_run(client: Client) -> None:
    definition = demo_definition("idempotent", cases=1)
    first = client.create_run(definition)
    again = client.create_run(definition)
    assert first.run_id == again.run_id
    assert (first.created, again.created) == (True, False)
    run = first.wait(timeout=60)
    assert run is first and run.status is RunStatus.COMPLETED
    assert run.kind is RunKind.EXPERIMENT
    assert run.progress.completed == 1
    assert run.aggregates["builtin/exact_match"].mean == 1.0
    [record] = list(run.results())
    assert record.parsed == {"answer": "1"}
    assert record.scores[0].score == 1.0
    assert client.get_run(run.run_id).status is RunStatus.COMPLETED


def test_events_resume_with_last_event_id_after_dropped_connections(
    server: ThemisServer, client: Client
) -> None:
    run = client.create_run(demo_definition("reconnect", cases=30, delay_ms=20, concurrency=2))
    proxy = CuttingProxy(server.address, cut_after=3000, cuts=3)
    try:
        with Client(proxy.url) as through_proxy:
            events = list(through_proxy.get_run(run.run_id).events())
    finally:
        proxy.close()
    finished = run.refresh()
    assert finished.status is RunStatus.COMPLETED
    # Every event once, in order, up to the terminal one, although three streams broke.
    assert [e.seq for e in events] == list(range(1, finished.view.last_event_seq + 1))
    assert events[-1].event_type == "run_completed"
    assert proxy.cut == 3
    resumed = [i for i in proxy.last_event_ids if i is not None]
    assert len(resumed) >= 3, proxy.last_event_ids
    assert resumed == sorted(set(resumed)), "each reconnect resumes further on"
    # `after` starts later; a resume point at the end ends at once.
    assert next(e.seq for e in run.events(after=5)) == 6
    assert list(run.events(after=finished.view.last_event_seq)) == []


def test_results_are_paged_filtered_and_become_a_dataframe(server: ThemisServer) -> None:
    transport = RecordingTransport()
    with Client(server.url, transport=transport) as client:
        run = client.create_run(demo_definition("paging", cases=125, datasets=2, error_rate=0.2)).wait()
        assert run.progress.total == 250
        records = list(run.results(page_size=100))
        pages = [r for r in transport.requests if r[1].endswith("/results")]
        assert len(pages) == 3
        assert [r.case_index for r in records] == list(range(250))
        failed = list(run.results(failed_only=True, page_size=7))
        assert len(failed) == run.progress.failed > 0
        assert all(r.status == "failed" and r.error is not None for r in failed)
        second = list(run.results(dataset_id="paging-1"))
        assert {r.dataset_id for r in second} == {"paging-1"} and len(second) == 125
        frame = run.results(dataset_id="paging-0").to_pandas()
    assert list(frame["case_index"]) == list(range(125))
    scored = frame[frame["status"] == "completed"]
    assert scored["builtin/exact_match"].eq(1.0).all()
    assert frame["error"].notna().sum() == sum(r.dataset_id == "paging-0" for r in failed)


def test_rejudge_is_a_run_of_its_own_and_idempotent(client: Client) -> None:
    run = client.create_run(demo_definition("rejudge", cases=4)).wait()
    rejudge = run.rejudge(metrics=["builtin/token_f1"], parsers=["builtin/text"])
    assert rejudge.kind is RunKind.REJUDGE and rejudge.parent_run_id == run.run_id
    assert rejudge.created
    done = rejudge.wait(timeout=60)
    assert done.status is RunStatus.COMPLETED
    assert set(done.aggregates) == {"builtin/token_f1"}
    again = run.rejudge({"metrics": ["builtin/token_f1"], "parsers": ["builtin/text"]})
    assert (again.run_id, again.created) == (rejudge.run_id, False)
    assert [r.run_id for r in client.list_runs(parent_run_id=run.run_id)] == [rejudge.run_id]


def test_cancel_stops_a_running_run(client: Client) -> None:
    run = client.create_run(demo_definition("cancel", cases=200, delay_ms=100, concurrency=1))
    for event in run.events():
        if event.event_type == "case_completed":
            break
    assert run.cancel().status in (RunStatus.RUNNING, RunStatus.CANCELLED)
    assert run.wait(timeout=60).status is RunStatus.CANCELLED
    assert 0 < run.progress.completed < 200
    assert [e.event_type for e in run.events()][-1] == "run_cancelled"
    assert run.cancel().status is RunStatus.CANCELLED


def test_wait_polls_with_the_etag_when_event_streams_are_refused() -> None:
    transport = RecordingTransport()
    with (
        ThemisServer("--max-event-streams", "0") as server,
        Client(server.url, transport=transport) as client,
    ):
        run = client.create_run(demo_definition("polling", cases=4, delay_ms=300, concurrency=1))
        with pytest.raises(ThemisError) as busy:
            next(iter(Client(server.url, max_reconnects=0).get_run(run.run_id).events()))
        assert (busy.value.status, busy.value.code, busy.value.retry_after) == (503, "busy", 5.0)
        assert run.wait(timeout=60, poll_interval=0.05).status is RunStatus.COMPLETED
    polls = [r for r in transport.requests if r[0] == "GET" and r[1] == f"/runs/{run.run_id}"]
    assert len(polls) >= 2
    assert any(status == 304 and etag for _, _, status, etag in polls), "unchanged polls are 304s"


def test_wait_gives_up_at_its_timeout(client: Client) -> None:
    run = client.create_run(demo_definition("timeout", cases=50, delay_ms=200, concurrency=1))
    with pytest.raises(ThemisError) as late:
        run.wait(timeout=0.5)
    assert late.value.code == "timeout" and late.value.status is None
    run.cancel()


def test_errors_carry_the_api_code_message_and_details(server: ThemisServer, client: Client) -> None:
    bad = demo_definition("errors")
    bad["datasets"][0]["cases"][0]["case_id"] = ""
    bad["evaluation"]["metrics"] = ["builtin/no_such_metric"]
    with pytest.raises(ThemisError) as invalid:
        client.create_run(bad)
    error = invalid.value
    assert (error.status, error.code) == (422, "invalid_definition")
    paths = {d.path for d in error.details}
    assert {"datasets[0].cases[0].case_id", "evaluation.metrics[0]"} <= paths
    assert "evaluation.metrics[0]" in str(error)

    missing = "run_" + "0" * 32
    for call in (lambda: client.get_run(missing), lambda: list(client.get_run("nope").events())):
        with pytest.raises(ThemisError) as refused:
            call()
        assert refused.value.code in ("not_found", "invalid_run_id")
    with pytest.raises(ThemisError) as not_found:
        client.get_run(missing)
    assert (not_found.value.status, not_found.value.code) == (404, "not_found")

    running = client.create_run(demo_definition("conflict", cases=50, delay_ms=100, concurrency=1))
    with pytest.raises(ThemisError) as conflict:
        running.rejudge(metrics=["builtin/exact_match"])
    assert (conflict.value.status, conflict.value.code) == (409, "conflict")
    running.cancel()

    with Client("http://127.0.0.1:9", timeout=2) as nowhere, pytest.raises(ThemisError) as unreachable:
        nowhere.get_run(missing)
    assert (unreachable.value.status, unreachable.value.code) == (None, "connection_failed")
    assert unreachable.value.retryable


def test_api_keys_come_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with ThemisServer("--api-keys", "k1") as server:
        with Client(server.url) as anonymous, pytest.raises(ThemisError) as refused:
            anonymous.create_run(demo_definition("keys"))
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        with Client(server.url, api_key="k1") as keyed:
            run = keyed.create_run(demo_definition("keys")).wait(timeout=60)
            assert [e.event_type for e in run.events()][-1] == "run_completed"
        monkeypatch.setenv("THEMIS_URL", server.url)
        monkeypatch.setenv("THEMIS_API_KEY", "k1")
        with Client() as from_env:
            assert from_env.get_run(run.run_id).status is RunStatus.COMPLETED


def test_comparisons(client: Client) -> None:
    baseline = client.create_run(demo_definition("compare", cases=40)).wait()
    candidate = client.create_run(demo_definition("compare", cases=40, wrong_rate=0.5)).wait()
    report = candidate.compare(baseline)
    assert (report.baseline.run_id, report.candidate.run_id) == (baseline.run_id, candidate.run_id)
    exact = report.metrics["builtin/exact_match"].overall
    assert exact.n_paired == 40 and exact.losses > 0 and exact.delta is not None and exact.delta < 0
    regressed = list(client.changed_cases(candidate, baseline, filter="regressed", page_size=3))
    assert len(regressed) == exact.losses
    assert all(c.changes["builtin/exact_match"].delta < 0 for c in regressed)
    table = client.compare_runs([baseline, candidate.run_id])
    assert [r.run_id for r in table.runs] == [baseline.run_id, candidate.run_id]
    assert table.metrics["builtin/exact_match"].versus_first[0].losses == exact.losses
    assert "builtin/exact_match" in client.compare_markdown(candidate, baseline)
