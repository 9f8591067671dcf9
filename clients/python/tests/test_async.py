"""The async client against the real service: the same operations, awaited."""

from __future__ import annotations

import asyncio

import pytest

from support import CuttingProxy, ThemisServer, demo_definition
from themis_client import AsyncClient, RunKind, RunStatus, ThemisError


def test_async_client_creates_follows_pages_rejudges_and_cancels(server: ThemisServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            run = await client.create_run(demo_definition("async", cases=150, error_rate=0.1))
            assert (
                run.created
                and (await client.create_run(demo_definition("async", cases=150))).run_id != run.run_id
            )
            events = [e async for e in run.events()]
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert events[-1].event_type == "run_completed"
            done = await run.wait(timeout=60)
            assert done.status is RunStatus.COMPLETED and done.view.last_event_seq == len(events)

            records = [r async for r in run.results(page_size=40)]
            assert [r.case_index for r in records] == list(range(150))
            failed = [r async for r in run.results(failed_only=True)]
            assert len(failed) == run.progress.failed > 0
            frame = await run.results().to_pandas()
            assert len(frame) == 150

            rejudge = await run.rejudge(metrics=["builtin/exact_match", "builtin/token_f1"])
            assert rejudge.kind is RunKind.REJUDGE and rejudge.parent_run_id == run.run_id
            assert (await rejudge.wait(timeout=60)).status is RunStatus.COMPLETED
            assert [r.run_id async for r in client.list_runs(parent_run_id=run.run_id)] == [rejudge.run_id]
            report = await rejudge.compare(run)
            assert report.candidate.run_id == rejudge.run_id

            slow = await client.create_run(
                demo_definition("async-cancel", cases=100, delay_ms=100, concurrency=1)
            )
            await slow.cancel()
            assert (await slow.wait(timeout=60)).status is RunStatus.CANCELLED

            with pytest.raises(ThemisError) as missing:
                await client.get_run("run_" + "f" * 32)
            assert (missing.value.status, missing.value.code) == (404, "not_found")

    asyncio.run(scenario())


def test_async_events_resume_after_dropped_connections(server: ThemisServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            run = await client.create_run(
                demo_definition("async-reconnect", cases=30, delay_ms=20, concurrency=2)
            )
            proxy = CuttingProxy(server.address, cut_after=3000, cuts=2)
            try:
                async with AsyncClient(proxy.url) as through_proxy:
                    events = [e async for e in (await through_proxy.get_run(run.run_id)).events()]
            finally:
                proxy.close()
            assert proxy.cut == 2
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert events[-1].event_type == "run_completed"

    asyncio.run(scenario())
