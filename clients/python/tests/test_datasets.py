"""Stored datasets, retries and deletions through the sync and async clients, against
the real service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from support import RecordingTransport, ThemisServer, demo_definition
from themis_client import AsyncClient, Client, RunKind, RunStatus, ThemisError

# The same three cases as JSONL and as CSV (with its own column names, a quoted comma
# and a quoted newline): both must be the same revision.
CASES: list[dict[str, Any]] = [
    {"case_id": "q1", "input": "1+1", "expected_output": "2", "metadata": {"source": "a, b"}},
    {"case_id": "q2", "input": "2+2", "expected_output": "4", "metadata": {"source": "line\nbreak"}},
    {"case_id": "q3", "input": "3+3", "expected_output": "6", "metadata": {"source": 'say "x"'}},
]
CSV = 'id,question,answer,source\nq1,1+1,2,"a, b"\nq2,2+2,4,"line\nbreak"\nq3,3+3,6,"say ""x"""\n'


def arithmetic(count: int) -> list[dict[str, Any]]:
    """Cases the demo generator answers right: ``i+1`` expects ``{"answer": i+1}``."""
    return [
        {"case_id": f"c{i}", "input": f"{i}+1", "expected_output": {"answer": str(i + 1)}}
        for i in range(count)
    ]


def stored_definition(dataset_id: str, **params: Any) -> dict[str, Any]:
    definition = demo_definition("unused", **params)
    definition["datasets"] = [{"dataset_id": dataset_id}]
    return definition


def test_jsonl_csv_and_dicts_of_the_same_cases_are_one_revision(client: Client, tmp_path: Path) -> None:
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text("".join(json.dumps(c) + "\n" for c in CASES) + "\n")
    csv = tmp_path / "cases.csv"
    csv.write_text(CSV)

    first = client.put_dataset("same", jsonl)
    assert first.created and first.case_count == 3 and first.revision.startswith("sha256:")
    from_csv = client.put_dataset(
        "same", csv, case_id="id", input="question", expected_output="answer", metadata=["source"]
    )
    from_dicts = client.put_dataset("same", iter(CASES))
    from_bytes = client.put_dataset(
        "same", CSV.encode(), format="csv", case_id="id", input="question", expected_output="answer"
    )
    assert [r.revision for r in (from_csv, from_dicts, from_bytes)] == [first.revision] * 3
    assert not (from_csv.created or from_dicts.created or from_bytes.created)
    assert [r.revision for r in client.dataset("same")] == [first.revision]
    assert list(client.dataset_cases("same")) == list(client.dataset_cases("same", first.revision))
    assert [c.model_dump(exclude_none=True) for c in client.dataset_cases("same")] == CASES


def test_revisions_are_listed_newest_first_and_cases_paged(server: ThemisServer, client: Client) -> None:
    old = client.put_dataset("paged", arithmetic(5))
    new = client.put_dataset("paged", arithmetic(7))
    assert new.created and new.revision != old.revision
    assert [r.revision for r in client.dataset("paged", page_size=1)] == [new.revision, old.revision]
    summary = next(d for d in client.datasets(page_size=1) if d.dataset_id == "paged")
    assert (summary.latest.revision, summary.revisions) == (new.revision, 2)

    # Pages of 2 follow the cursor to the end, newest revision by default.
    transport = RecordingTransport()
    with Client(server.url, transport=transport) as counting:
        newest = [c.case_id for c in counting.dataset_cases("paged", page_size=2)]
        oldest = [c.case_id for c in counting.dataset_cases("paged", old.revision, page_size=2)]
    assert newest == [f"c{i}" for i in range(7)] and oldest == [f"c{i}" for i in range(5)]
    assert sum(r[1] == "/datasets/paged/cases" for r in transport.requests) == 4 + 3


def test_bad_uploads_name_what_is_wrong(client: Client, tmp_path: Path) -> None:
    with pytest.raises(ThemisError) as invalid:
        client.put_dataset("bad", [{"case_id": "a", "input": 1}, {"input": 2}])
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_dataset")
    assert [d.path for d in invalid.value.details] == ["line 2.case_id"]
    with pytest.raises(ThemisError) as missing:
        list(client.dataset_cases("never-uploaded"))
    assert missing.value.status == 404
    # Caught before anything is sent.
    with pytest.raises(ValueError, match="format"):
        client.put_dataset("bad", b'{"case_id": "a", "input": 1}\n')
    with pytest.raises(ValueError, match="CSV column"):
        client.put_dataset("bad", [{"case_id": "a", "input": 1}], case_id="id")
    (tmp_path / "cases.txt").write_text("")
    with pytest.raises(ValueError, match="cannot tell the format"):
        client.put_dataset("bad", tmp_path / "cases.txt")


def test_a_revision_in_use_cannot_be_deleted_until_its_run_is(client: Client) -> None:
    revision = client.put_dataset("in-use", arithmetic(4)).revision
    run = client.create_run(stored_definition("in-use")).wait(timeout=60)
    assert run.status is RunStatus.COMPLETED and run.progress.completed == 4
    assert run.aggregates["builtin/exact_match"].mean == 1.0

    with pytest.raises(ThemisError) as refused:
        client.delete_dataset_revision("in-use", revision)
    assert (refused.value.status, refused.value.code) == (409, "conflict")
    assert refused.value.run_ids == [run.run_id]
    assert run.delete() == [run.run_id]
    with pytest.raises(ThemisError) as gone:
        run.refresh()
    assert gone.value.status == 404
    deleted = client.delete_dataset_revision("in-use", revision)
    assert (deleted.dataset_id, deleted.deleted) == ("in-use", [revision])
    assert all(d.dataset_id != "in-use" for d in client.datasets())


def test_retry_reruns_failed_cases_and_cascading_delete_removes_it(client: Client) -> None:
    parent = client.create_run(demo_definition("retry", cases=40, error_rate=0.3)).wait(timeout=60)
    assert parent.progress.failed > 0
    retry = parent.retry()
    assert retry.created and retry.kind is RunKind.RETRY and retry.parent_run_id == parent.run_id
    assert parent.retry().run_id == retry.run_id and not parent.retry().created
    done = retry.wait(timeout=60)
    assert done.status is RunStatus.COMPLETED and done.progress.total == 40
    # Completed cases were reused; the failed ones ran again (and fail at the same rate).
    assert done.progress.completed >= parent.progress.completed

    with pytest.raises(ThemisError) as refused:
        parent.delete()
    assert refused.value.status == 409 and refused.value.run_ids == [retry.run_id]
    assert parent.delete(cascade=True) == [parent.run_id, retry.run_id]


def test_async_client_uploads_pages_retries_and_deletes(server: ThemisServer, tmp_path: Path) -> None:
    path = tmp_path / "async.csv"
    path.write_text("case_id,input\n" + "".join(f"c{i},{i}+1\n" for i in range(5)))

    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            uploaded = await client.put_dataset("async-ds", path)
            again = await client.put_dataset(
                "async-ds", ({"case_id": f"c{i}", "input": f"{i}+1"} for i in range(5))
            )
            assert uploaded.created and not again.created and again.revision == uploaded.revision
            cases = [c.case_id async for c in client.dataset_cases("async-ds", page_size=2)]
            assert cases == [f"c{i}" for i in range(5)]
            assert [r.revision async for r in client.dataset("async-ds")] == [uploaded.revision]
            assert "async-ds" in [d.dataset_id async for d in client.datasets()]

            run = await (await client.create_run(stored_definition("async-ds", error_rate=0.5))).wait(
                timeout=60
            )
            retry = await run.retry()
            assert retry.kind is RunKind.RETRY and retry.parent_run_id == run.run_id
            await retry.wait(timeout=60)
            # The retry uses the dataset through its parent, which names it.
            with pytest.raises(ThemisError) as refused:
                await client.delete_dataset("async-ds")
            assert refused.value.status == 409 and refused.value.run_ids == [run.run_id]
            assert await run.delete(cascade=True) == [run.run_id, retry.run_id]
            assert (await client.delete_dataset("async-ds")).deleted == [uploaded.revision]

    asyncio.run(scenario())
