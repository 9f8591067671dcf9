"""Run the framework's own experiments (``themis-eval``) on a Themis service.

``run_experiment(client, experiment, subscribers=..., tracing_provider=...)`` stands
in for ``experiment.run(subscribers=..., tracing_provider=...)``: the experiment is
converted to a service definition (``experiment_to_definition``), run on the service,
and its events are replayed into the subscribers and the tracing provider as they
arrive (``EventReplay``). Needs the ``framework`` extra.
"""

from __future__ import annotations

from typing import Any

from ..aio import AsyncClient, AsyncRun
from ..client import Client, Run
from .convert import experiment_to_definition
from .replay import EventReplay

__all__ = ["EventReplay", "arun_experiment", "experiment_to_definition", "run_experiment"]


def run_experiment(
    client: Client,
    experiment: Any,
    *,
    subscribers: list[Any] | None = None,
    tracing_provider: Any | None = None,
) -> Run:
    """Runs ``experiment`` on the service and returns the finished run (``run_id``,
    ``status``, ``aggregates``, ``results()``). An experiment that already ran is found,
    not run again, and its stored events are replayed all the same."""
    definition = experiment_to_definition(experiment)
    replay = EventReplay(experiment, subscribers, tracing_provider)
    run = _refuse_existing(client.create_run(definition), experiment)
    for event in run.events():
        replay.feed(event)
    return run.refresh()


async def arun_experiment(
    client: AsyncClient,
    experiment: Any,
    *,
    subscribers: list[Any] | None = None,
    tracing_provider: Any | None = None,
) -> AsyncRun:
    """``run_experiment`` with an ``AsyncClient``."""
    definition = experiment_to_definition(experiment)
    replay = EventReplay(experiment, subscribers, tracing_provider)
    run = _refuse_existing(await client.create_run(definition), experiment)
    async for event in run.events():
        replay.feed(event)
    return await run.refresh()


def _refuse_existing[R: (Run, AsyncRun)](run: R, experiment: Any) -> R:
    """The framework's ``existing_run_policy="error"``: a run that exists is an error."""
    if not run.created and experiment.runtime.existing_run_policy == "error":
        raise ValueError(f"Run already exists for run_id={run.run_id}")
    return run
