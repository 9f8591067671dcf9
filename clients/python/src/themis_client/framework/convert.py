"""A framework ``Experiment`` (``themis-eval``) as a Themis run definition.

Everything that changes what a run computes and has no counterpart on the service is
refused (``UnmappableExperimentError``, every problem at once); settings that only
change how the framework would execute locally are not sent, with an
``UnmappedSettingWarning`` naming each. The client's README lists both.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..errors import UnmappableExperimentError, UnmappedSettingWarning

# The service's largest `concurrency`.
MAX_CONCURRENCY = 4096

_OBJECT = (
    "a Python component runs in your process; the service runs its own components, "
    "named by id (for example 'builtin/exact_match')"
)


def experiment_to_definition(experiment: Any) -> dict[str, Any]:
    """The body of ``POST /runs`` for ``experiment``."""
    problems: list[tuple[str, str]] = []

    def component(path: str, value: Any) -> Any:
        if isinstance(value, str):
            return value
        problems.append((path, _OBJECT))
        return None

    def refuse(path: str, present: Any, why: str) -> None:
        if present:
            problems.append((path, why))

    generation = experiment.generation
    evaluation = experiment.evaluation
    refuse(
        "generation.prompt_spec",
        generation.prompt_spec is not None,
        "prompts are params of the service's generator (openai/chat `prompt` or `messages`)",
    )
    refuse(
        "generation.selector",
        generation.selector is not None and generation.reducer is not None,
        "the service has one reducer slot: give a selector or a reducer, not both",
    )
    refuse(
        "evaluation.judge_models",
        evaluation.judge_models,
        "judge models run in your process; the service's judges take their model as params",
    )
    refuse(
        "evaluation.prompt_spec",
        evaluation.prompt_spec is not None,
        "judge prompts are params of the service's judges (openai/judge `rubric`)",
    )
    refuse("evaluation.judge_config", evaluation.judge_config, "no counterpart on the service")
    refuse("evaluation.workflow_overrides", evaluation.workflow_overrides, "no counterpart on the service")
    refuse(
        "runtime.existing_run_policy",
        experiment.runtime.existing_run_policy == "rerun",
        "the service never runs a finished run again (the same definition is the same run)",
    )

    policy = dict(generation.candidate_policy)
    num_samples = policy.pop("num_samples", 1)
    refuse(
        "generation.candidate_policy.num_samples",
        not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1,
        "must be a whole number of at least 1",
    )
    for key in policy:
        problems.append(
            (f"generation.candidate_policy.{key}", "the service's candidate policy has num_samples only")
        )

    reducer = generation.reducer if generation.reducer is not None else generation.selector
    reducer_path = "generation.reducer" if generation.reducer is not None else "generation.selector"
    definition: dict[str, Any] = {
        "generation": {
            "generator": component("generation.generator", generation.generator),
            "candidate_policy": {"num_samples": num_samples},
            **({"reducer": component(reducer_path, reducer)} if reducer is not None else {}),
        },
        "evaluation": {
            "parsers": [component(f"evaluation.parsers[{i}]", p) for i, p in enumerate(evaluation.parsers)],
            "metrics": [component(f"evaluation.metrics[{i}]", m) for i, m in enumerate(evaluation.metrics)],
            "judges": [],
        },
        "datasets": [_dataset(i, dataset) for i, dataset in enumerate(experiment.datasets)],
        "seeds": _seeds(experiment.seeds),
    }
    if "max_concurrent_tasks" in experiment.runtime.model_fields_set:
        definition["concurrency"] = max(1, min(experiment.runtime.max_concurrent_tasks, MAX_CONCURRENCY))
    if problems:
        raise UnmappableExperimentError(problems)
    _warn_runtime(experiment)
    return definition


def _dataset(index: int, dataset: Any) -> dict[str, Any]:
    if dataset.revision is not None:
        _warn(f"datasets[{index}].revision", "the service's datasets have no revision; it is not sent")
    if dataset.metadata:
        _warn(f"datasets[{index}].metadata", "the service keeps metadata per case only; it is not sent")
    cases = []
    for case in dataset.cases:
        entry: dict[str, Any] = {"case_id": case.case_id, "input": case.input}
        if case.expected_output is not None:
            entry["expected_output"] = case.expected_output
        if case.metadata:
            entry["metadata"] = dict(case.metadata)
        cases.append(entry)
    return {"dataset_id": dataset.dataset_id, "cases": cases}


def _seeds(seeds: list[int]) -> list[int]:
    """The framework's seeds are one per candidate; the service's are one per run of
    each case, and it derives each candidate's seed from the case and that seed. So the
    first seed is the case seed (0 without seeds)."""
    if len(seeds) > 1:
        _warn(
            "seeds",
            "the service derives candidate seeds from the case and the first seed; "
            f"seeds {seeds[1:]} are not sent",
        )
    return [seeds[0]] if seeds else [0]


def _warn_runtime(experiment: Any) -> None:
    from themis.core.config import RuntimeConfig

    defaults = RuntimeConfig()
    for name in type(defaults).model_fields:
        if name in ("max_concurrent_tasks", "existing_run_policy"):
            continue
        if getattr(experiment.runtime, name) != getattr(defaults, name):
            _warn(
                f"runtime.{name}",
                "the service has no such setting (retries and limits are "
                "params of its components and flags of the server); it is not sent",
            )
    if experiment.storage.store != "memory":
        _warn("storage", "the service keeps the run in its own database; the local store is not used")
    if experiment.environment_metadata:
        _warn("environment_metadata", "provenance is not part of a service run; it is not sent")


def _warn(path: str, why: str) -> None:
    warnings.warn(f"{path}: {why}", UnmappedSettingWarning, stacklevel=4)
