"""A service run's events, replayed into the framework's ``LifecycleSubscriber`` hooks
and ``TracingProvider`` spans in the order its own orchestrator calls them.

For each stage event the framework's sequence is kept: ``before_<stage>`` hook, span
start, ``after_<stage>`` hook (on success), ``on_event`` with the framework's event
class, span end (``ok`` or ``error``). ``run`` spans the whole run. Events the
framework has no class for (``case_*``, ``progress``, ``provider_*``,
``run_cancelled``) reach ``on_event`` as its base ``RunEvent`` with their fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models import RunEvent

_SPANS = {
    "generation": "generation",
    "reduction": "reduction",
    "parse": "parse",
    "score": "score",
    "evaluation": "judge",
}


@dataclass
class _CaseState:
    """What a case produced so far: the arguments of its later hooks."""

    candidates: list[Any] = field(default_factory=list)
    reduced: Any = None
    parsed: Any = None


@dataclass
class _Step:
    """One stage event as the framework would have lived it."""

    span: str
    attributes: dict[str, object]
    ok: bool
    before: tuple[str, tuple[Any, ...]] | None = None
    after: tuple[str, tuple[Any, ...]] | None = None


class EventReplay:
    """Feed it a run's events in order (``feed``); it calls ``subscribers`` and
    ``tracing_provider``. ``experiment`` supplies the framework ``Case`` objects the
    hooks receive."""

    def __init__(self, experiment: Any, subscribers: list[Any] | None, tracing_provider: Any | None) -> None:
        from themis.core import contexts, events, models

        self._events, self._models, self._contexts = events, models, contexts
        self.subscribers = list(subscribers or [])
        self.tracer = tracing_provider
        self.cases = {(d.dataset_id, c.case_id): c for d in experiment.datasets for c in d.cases}
        self.states: dict[int, _CaseState] = {}
        self.run_span: Any = None

    def feed(self, event: RunEvent) -> None:
        kind = event.event_type
        stage, _, outcome = kind.rpartition("_")
        if kind == "run_started" and self.run_span is None:
            self.run_span = self._start("run", {"run_id": event.run_id})
        if stage in _SPANS and outcome in ("completed", "failed"):
            self._replay(self._step(event, stage, outcome == "completed"), event)
            return
        self._notify("on_event", self.framework_event(event))
        if event.is_terminal and self.run_span is not None:
            clean = kind == "run_completed" and not (event.progress and event.progress.failed)
            self._end(self.run_span, "ok" if clean else "error")
            self.run_span = None
        if kind in ("case_completed", "case_failed") and event.case_index is not None:
            self.states.pop(event.case_index, None)

    def _replay(self, step: _Step, event: RunEvent) -> None:
        if step.before:
            self._notify(step.before[0], *step.before[1])
        span = self._start(step.span, step.attributes)
        if step.after:
            self._notify(step.after[0], *step.after[1])
        self._notify("on_event", self.framework_event(event))
        self._end(span, "ok" if step.ok else "error")

    def _step(self, event: RunEvent, stage: str, ok: bool) -> _Step:
        m, ctx = self._models, self._contexts
        state = self.states.setdefault(event.case_index or 0, _CaseState())
        case = self._case(event)
        seed = int(event.seed) if event.seed is not None else None
        step = _Step(_SPANS[stage], {"case_id": event.case_id}, ok)
        if stage == "generation":
            generate = ctx.GenerateContext(
                run_id=event.run_id, case_id=case.case_id, seed=_int(event.candidate_seed)
            )
            step.before = ("before_generate", (case, generate))
            if ok:
                result = m.GenerationResult(candidate_id=event.candidate_id or "", final_output=event.result)
                state.candidates.append(result)
                step.after = ("after_generate", (result, generate))
        elif stage == "reduction":
            reduce = ctx.ReduceContext(
                run_id=event.run_id,
                case_id=case.case_id,
                candidate_ids=[c.candidate_id for c in state.candidates],
                seed=seed,
            )
            step.before = ("before_reduce", (list(state.candidates), reduce))
            if ok:
                state.reduced = self._reduced(event)
                step.after = ("after_reduce", (state.reduced, reduce))
        elif stage == "parse":
            candidate = state.reduced or m.ReducedCandidate(
                candidate_id=event.candidate_id or "", final_output=None
            )
            parse = ctx.ParseContext(
                run_id=event.run_id, case_id=case.case_id, candidate_id=candidate.candidate_id
            )
            step.before = ("before_parse", (candidate, parse))
            if ok:
                state.parsed = m.ParsedOutput(value=event.result)
                step.after = ("after_parse", (state.parsed, parse))
        elif stage == "score":
            parsed = state.parsed or m.ParsedOutput(
                value=state.reduced.final_output if state.reduced else None
            )
            score_ctx = ctx.ScoreContext(run_id=event.run_id, case=case, parsed_output=parsed, seed=seed)
            outcome = self._score(event)
            step.ok = isinstance(outcome, m.Score)
            step.attributes["metric_id"] = event.metric_id
            step.before = ("before_score", (parsed, score_ctx))
            step.after = ("after_score", (outcome, score_ctx))
        else:
            step.attributes["metric_id"] = event.metric_id
        return step

    def _case(self, event: RunEvent) -> Any:
        found = self.cases.get((event.dataset_id, event.case_id))
        return found or self._models.Case(case_id=event.case_id or "", input=None)

    def _reduced(self, event: RunEvent) -> Any:
        return self._models.ReducedCandidate(
            candidate_id=event.candidate_id or "",
            source_candidate_ids=event.source_candidate_ids or [],
            final_output=event.result,
        )

    def _score(self, event: RunEvent) -> Any:
        """``Score`` for a score, ``ScoreError`` for a failure (or a non-finite score)."""
        m = self._models
        if event.event_type == "score_completed" and event.score is not None:
            return m.Score(metric_id=event.metric_id, value=event.score)
        reason = event.error or "the metric returned a number that is not finite"
        return m.ScoreError(metric_id=event.metric_id, reason=reason)

    def framework_event(self, event: RunEvent) -> Any:
        """The framework's event for ``event`` (its class where the names match), with
        the service's extra fields kept (``seq``, ``dataset_id``, ``case_index``...)."""
        payload = event.model_dump(mode="json", exclude_none=True)
        kind = event.event_type
        if kind == "generation_completed":
            payload["case_seed"] = payload.pop("seed", None)
            payload["seed"] = _int(payload.pop("candidate_seed", None))
            payload["result"] = self._models.GenerationResult(
                candidate_id=event.candidate_id or "", final_output=event.result
            ).model_dump(mode="json")
        elif kind == "reduction_completed":
            payload["result"] = self._reduced(event).model_dump(mode="json")
        elif kind == "parse_completed":
            payload["result"] = self._models.ParsedOutput(value=event.result).model_dump(mode="json")
        elif kind == "score_completed":
            outcome = self._score(event)
            payload["score"] = outcome.model_dump(mode="json") if event.score is not None else None
        elif kind == "score_failed":
            payload["error"] = self._score(event).model_dump(mode="json")
        event_class = self._events.EVENT_TYPES.get(kind, self._events.RunEvent)
        return event_class.model_validate(payload)

    def _notify(self, hook: str, *args: Any) -> None:
        for subscriber in self.subscribers:
            method = getattr(subscriber, hook, None)
            if method is not None:
                method(*args)

    def _start(self, name: str, attributes: dict[str, object]) -> Any:
        return self.tracer.start_span(name, attributes) if self.tracer is not None else None

    def _end(self, span: Any, status: str) -> None:
        if self.tracer is not None:
            self.tracer.end_span(span, status)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None else None
