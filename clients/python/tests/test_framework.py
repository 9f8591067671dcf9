"""The framework's own experiments (themis-eval, the real package) run on the service
through the bridge, compared with the same experiments run locally by the framework."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from types import ModuleType
from typing import Any

import pytest
from themis.core.config import EvaluationConfig, GenerationConfig, RuntimeConfig, StorageConfig
from themis.core.experiment import Experiment
from themis.core.models import Case, Dataset, GenerationResult, ParsedOutput, ReducedCandidate, Score
from themis.core.prompts import PromptSpec

from support import EXAMPLES, REPO, ThemisServer
from themis_client import (
    AsyncClient,
    Client,
    RunStatus,
    UnmappableExperimentError,
    UnmappedSettingWarning,
    arun_experiment,
    experiment_to_definition,
    run_experiment,
)

REMOTE_RUN = "    result = themis_client.run_experiment(themis_client.Client(), experiment,\n"
LOCAL_RUN = "    result = experiment.run(\n"


def load_example(local: bool = False) -> ModuleType:
    """``examples/observe.py``, or with ``local`` the framework's own example it was
    made from (the ``experiment.run(...)`` line back, without ``import themis_client``)."""
    source = (EXAMPLES / "observe.py").read_text()
    assert source.count(REMOTE_RUN) == 1 and source.count("import themis_client\n") == 1
    if local:
        source = source.replace(REMOTE_RUN, LOCAL_RUN).replace("import themis_client\n", "")
    module = ModuleType("observe_local" if local else "observe")
    exec(compile(source, str(EXAMPLES / "observe.py"), "exec"), module.__dict__)  # noqa: S102 - our own example
    return module


class EveryHook:
    """A subscriber implementing every hook of the framework, recording their
    arguments' types; spans go to the example's ``RecordingTracer``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.tracer = load_example().RecordingTracer()

    def __getattr__(self, hook: str) -> Any:
        if not hook.startswith(("before_", "after_")):
            raise AttributeError(hook)
        return lambda value, ctx: self.calls.append((hook, type(value).__name__ + "/" + type(ctx).__name__))

    def on_event(self, event: Any) -> None:
        self.calls.append(("on_event", type(event).__name__))

    @property
    def spans(self) -> list[tuple[str, str]]:
        return list(self.tracer.ended)


def local_and_remote(experiment: Experiment, client: Client) -> tuple[EveryHook, EveryHook, Any]:
    local, remote = EveryHook(), EveryHook()
    experiment.run(subscribers=[local], tracing_provider=local.tracer)
    run = run_experiment(client, experiment, subscribers=[remote], tracing_provider=remote.tracer)
    return local, remote, run


def framework_only(calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The calls the framework makes too (the service's extra events are `RunEvent`s)."""
    return [c for c in calls if c != ("on_event", "RunEvent")]


def test_the_seed_example_runs_remotely_with_only_the_run_line_changed(
    server: ThemisServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = load_example(local=True).run_example()
    monkeypatch.setenv("THEMIS_URL", server.url)
    remote = load_example().run_example()
    assert remote["status"] == "completed"
    # The same experiment as the service's own seed example (examples/observe.json).
    seed = json.loads((REPO / "examples" / "observe.json").read_text())
    assert remote["run_id"] == client.create_run(seed).run_id
    assert [c for c in remote["subscriber_calls"] if c != "RunEvent"] == local["subscriber_calls"]
    assert remote["span_names"] == local["span_names"]
    assert remote["ended_spans"] == local["ended_spans"]


def test_every_hook_and_span_of_a_multi_sample_experiment_matches_the_framework(client: Client) -> None:
    experiment = Experiment(
        generation=GenerationConfig(
            generator="builtin/demo_generator",
            candidate_policy={"num_samples": 3},
            reducer="builtin/majority_vote",
        ),
        evaluation=EvaluationConfig(
            metrics=["builtin/exact_match", "builtin/f1"], parsers=["builtin/json_identity"]
        ),
        storage=StorageConfig(store="memory"),
        datasets=[
            Dataset(
                dataset_id=f"bridge-{d}",
                cases=[
                    Case(
                        case_id=f"q{i}",
                        input={"question": f"{i}*{d + 2}"},
                        expected_output={"answer": str(i * (d + 2))},
                    )
                    for i in range(3)
                ],
            )
            for d in range(2)
        ],
        seeds=[11, 12, 13],
    )
    with pytest.warns(UnmappedSettingWarning, match=r"seeds.*\[12, 13\]"):
        local, remote, run = local_and_remote(experiment, client)
    assert run.status is RunStatus.COMPLETED
    assert run.progress.total == 6 and run.view.definition is None
    assert Counter(framework_only(remote.calls)) == Counter(local.calls)
    assert Counter(remote.spans) == Counter(local.spans)
    assert ("after_generate", "GenerationResult/GenerateContext") in remote.calls
    # What the hooks saw is what the service computed.
    records = {(r.dataset_id, r.case_id): r for r in run.results()}
    assert len(records) == 6 and all(len(r.candidates) == 3 for r in records.values())
    assert run.aggregates["builtin/exact_match"].mean == 1.0


def test_hook_arguments_are_the_framework_models_of_what_the_service_did(client: Client) -> None:
    seen: dict[str, list[Any]] = {}

    class Keep:
        def __getattr__(self, hook: str) -> Any:
            return lambda *args: seen.setdefault(hook, []).append(args)

    experiment = load_seed_experiment()
    run = run_experiment(client, experiment, subscribers=[Keep()])
    [record] = list(run.results())
    [(generated, generate_ctx)] = seen["after_generate"]
    assert isinstance(generated, GenerationResult)
    assert (generated.candidate_id, generated.final_output) == (
        record.candidates[0].candidate_id,
        {"answer": "4"},
    )
    assert generate_ctx.seed == int(record.candidates[0].seed) and generate_ctx.run_id == run.run_id
    [(reduced, _)] = seen["after_reduce"]
    assert isinstance(reduced, ReducedCandidate) and reduced.source_candidate_ids == [generated.candidate_id]
    [(parsed, _)] = seen["after_parse"]
    assert isinstance(parsed, ParsedOutput) and parsed.value == record.parsed
    [(score, score_ctx)] = seen["after_score"]
    assert isinstance(score, Score) and (score.metric_id, score.value) == ("builtin/exact_match", 1.0)
    assert score_ctx.case.case_id == "case-1" and score_ctx.case.expected_output == {"answer": "4"}
    event_types = [type(e).__name__ for (e,) in seen["on_event"]]
    assert event_types[0] == "RunStartedEvent" and event_types[-1] == "RunCompletedEvent"
    [generation_event] = [e for (e,) in seen["on_event"] if e.event_type == "generation_completed"]
    assert generation_event.seq == 3 and generation_event.dataset_id == "sample"
    assert generation_event.result["final_output"] == {"answer": "4"}


def load_seed_experiment() -> Experiment:
    """The seed page's experiment, built by its own code (`experiment.run` intercepted)."""
    captured: list[Experiment] = []

    def capture(self: Experiment, **_: Any) -> Any:
        captured.append(self)
        raise LookupError

    module = load_example(local=True)
    original = Experiment.run
    Experiment.run = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(LookupError):
            module.run_example()
    finally:
        Experiment.run = original  # type: ignore[method-assign]
    return captured[0]


def test_failures_reach_the_hooks_and_end_their_spans_in_error(client: Client) -> None:
    experiment = Experiment(
        generation=GenerationConfig(generator="builtin/demo_generator"),
        evaluation=EvaluationConfig(metrics=["builtin/exact_match"], parsers=["builtin/json_identity"]),
        storage=StorageConfig(store="memory"),
        datasets=[
            Dataset(
                dataset_id="bridge-failures",
                cases=[
                    Case(case_id="fine", input={"question": "1+1"}, expected_output={"answer": "2"}),
                    # Nested past the demo generator's depth limit: its generation fails.
                    Case(
                        case_id="broken",
                        input={"question": "(" * 300 + "1+1" + ")" * 300},
                        expected_output="?",
                    ),
                ],
            )
        ],
        seeds=[3],
    )
    remote = EveryHook()
    run = run_experiment(client, experiment, subscribers=[remote], tracing_provider=remote.tracer)
    assert run.status is RunStatus.COMPLETED and run.progress.failed == 1
    assert ("on_event", "GenerationFailedEvent") in remote.calls
    assert ("generation", "error") in remote.spans and ("generation", "ok") in remote.spans
    assert remote.spans[-1] == ("run", "error"), "a run with a failed case ends its span in error"


def test_what_cannot_run_on_the_service_is_refused_all_at_once() -> None:
    class LocalGenerator:
        component_id, version = "mine/generator", "1"

        def fingerprint(self) -> str:
            return "x"

        async def generate(self, case: Any, ctx: Any) -> Any:
            raise NotImplementedError

    experiment = Experiment(
        generation=GenerationConfig(
            generator=LocalGenerator(),
            candidate_policy={"num_samples": 2, "best_of": 2},
            selector="builtin/best_of_n",
            reducer="builtin/majority_vote",
            prompt_spec=PromptSpec(instructions="Answer."),
        ),
        evaluation=EvaluationConfig(
            metrics=["builtin/llm_rubric"],
            judge_models=["builtin/demo_judge"],
            judge_config={"rubric": "be kind"},
        ),
        storage=StorageConfig(store="memory"),
        runtime=RuntimeConfig(existing_run_policy="rerun"),
        datasets=[Dataset(dataset_id="d", cases=[Case(case_id="c", input="x")])],
    )
    with pytest.raises(UnmappableExperimentError) as refused:
        experiment_to_definition(experiment)
    assert [path for path, _ in refused.value.problems] == [
        "generation.prompt_spec",
        "generation.selector",
        "evaluation.judge_models",
        "evaluation.judge_config",
        "runtime.existing_run_policy",
        "generation.candidate_policy.best_of",
        "generation.generator",
    ]
    assert "generation.generator: a Python component" in str(refused.value)


def test_settings_without_a_counterpart_warn_and_concurrency_is_sent(client: Client) -> None:
    experiment = load_seed_experiment().model_copy(
        update={
            "runtime": RuntimeConfig(max_concurrent_tasks=3, generation_retry_attempts=5),
            "storage": StorageConfig(store="sqlite", parameters={"path": "local.db"}),
            "datasets": [
                Dataset(dataset_id="sample-v2", revision="v2", cases=load_seed_experiment().datasets[0].cases)
            ],
        }
    )
    with pytest.warns(UnmappedSettingWarning) as warned:
        definition = experiment_to_definition(experiment)
    assert sorted(str(w.message).split(":")[0] for w in warned) == [
        "datasets[0].revision",
        "runtime.generation_retry_attempts",
        "storage",
    ]
    assert definition["concurrency"] == 3 and definition["seeds"] == [7]
    run = client.create_run(definition).wait(timeout=60)
    assert run.client.get_run(run.run_id, include_definition=True).view.runtime == {"concurrency": 3}


def test_the_async_bridge_and_the_existing_run_policy(server: ThemisServer) -> None:
    experiment = load_seed_experiment()

    async def scenario() -> None:
        async with AsyncClient(server.url) as client:
            recorder = EveryHook()
            run = await arun_experiment(
                client, experiment, subscribers=[recorder], tracing_provider=recorder.tracer
            )
            assert run.status is RunStatus.COMPLETED
            assert recorder.spans[-1] == ("run", "ok")
            assert ("after_score", "Score/ScoreContext") in recorder.calls

    asyncio.run(scenario())
    strict = experiment.model_copy(update={"runtime": RuntimeConfig(existing_run_policy="error")})
    with Client(server.url) as client, pytest.raises(ValueError, match="Run already exists"):
        run_experiment(client, strict)
