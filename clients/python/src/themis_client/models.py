"""Typed views of the service's JSON, following `openapi.yaml` (schema names kept).

Models accept fields the service adds later (``extra="allow"``), so an older client
keeps working against a newer server. Seeds are strings, as the service writes them
(they span the whole 64-bit range).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class RunKind(StrEnum):
    EXPERIMENT = "experiment"
    REJUDGE = "rejudge"
    RETRY = "retry"


class Progress(_Model):
    total: int
    completed: int
    failed: int


class Usage(_Model):
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class MetricSummary(_Model):
    n: int
    failures: int
    mean: float | None
    stderr: float | None
    ci95: tuple[float, float] | None
    corpus_bleu: float | None = None
    ci95_bootstrap: tuple[float, float] | None = None


class MetricAggregate(MetricSummary):
    by_dataset: dict[str, MetricSummary] = Field(default_factory=dict)


class Links(_Model):
    self_: str = Field(alias="self")
    results: str
    events: str


class RunView(_Model):
    run_id: str
    kind: RunKind
    parent_run_id: str | None = None
    status: RunStatus
    progress: Progress
    usage: Usage
    aggregates: dict[str, MetricAggregate]
    error: str | None
    cancel_requested: bool
    last_event_seq: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    duration_ms: int | None
    definition: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None
    telemetry: dict[str, Any] | None = None
    links: Links


class RunPage(_Model):
    runs: list[RunView]
    next_cursor: str | None


class Candidate(_Model):
    candidate_id: str
    candidate_index: int
    seed: str
    output: Any
    raw_text: str | None = None
    finish_reason: str | None = None
    usage: Usage
    duration_ms: int
    error: str | None = None


class Reduced(_Model):
    candidate_id: str
    output: Any
    source_candidate_ids: list[str]
    details: Any = None


class ParseStep(_Model):
    parser_id: str
    output: Any
    error: str | None = None


class ScoreRecord(_Model):
    metric_id: str
    score: float | None
    details: Any = None
    error: str | None = None


class JudgmentRecord(_Model):
    judge_id: str
    score: float | None
    passed: bool | None = None
    rationale: str | None = None
    details: Any = None
    usage: Usage
    error: str | None = None


class StageRecord(_Model):
    stage: str
    duration_ms: int
    error: str | None = None


class CaseError(_Model):
    stage: str
    message: str


class CaseRecord(_Model):
    run_id: str
    case_index: int
    dataset_id: str
    case_id: str
    seed: str
    status: str
    candidates: list[Candidate]
    reduced: Reduced | None
    parsed: Any
    parse_steps: list[ParseStep]
    scores: list[ScoreRecord]
    judgments: list[JudgmentRecord]
    error: CaseError | None
    stages: list[StageRecord]
    usage: Usage
    started_at: str
    finished_at: str


class ResultsPage(_Model):
    results: list[CaseRecord]
    next_cursor: str | None


TERMINAL_EVENTS = frozenset({"run_completed", "run_failed", "run_cancelled"})


class RunEvent(_Model):
    """A lifecycle event as streamed: the common fields, then the payload of its
    ``event_type`` (every payload field of ``openapi.yaml`` is optional here)."""

    schema_version: str
    run_id: str
    seq: int
    occurred_at: str
    event_type: str
    # About a case.
    case_index: int | None = None
    dataset_id: str | None = None
    case_id: str | None = None
    seed: str | None = None
    # Stage payloads.
    candidate_id: str | None = None
    candidate_index: int | None = None
    candidate_seed: str | None = None
    provider_key: str | None = None
    result: Any = None
    source_candidate_ids: list[str] | None = None
    parser_id: str | None = None
    metric_id: str | None = None
    score: float | None = None
    error: str | None = None
    error_message: str | None = None
    execution: JudgmentRecord | None = None
    stage: str | None = None
    duration_ms: int | None = None
    # Run payloads.
    total_cases: int | None = None
    resumed: bool | None = None
    progress: Progress | None = None
    # Provider payloads.
    provider: str | None = None
    attempt: int | None = None
    delay_ms: int | None = None
    reason: str | None = None
    wait_ms: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.event_type in TERMINAL_EVENTS


class FieldError(_Model):
    path: str
    message: str


class RunSide(_Model):
    run_id: str
    kind: RunKind
    status: RunStatus


class PairedStats(_Model):
    """Paired statistics of a metric between two runs (candidate − baseline)."""

    n_paired: int
    delta: float | None
    delta_ci95: tuple[float, float] | None
    p_value: float | None
    test: str | None
    wins: int
    losses: int
    ties: int


class Comparison(PairedStats):
    baseline_mean: float | None
    candidate_mean: float | None
    unscored: int
    unpaired_baseline: int
    unpaired_candidate: int


class MetricComparison(_Model):
    overall: Comparison
    by_dataset: dict[str, Comparison]


class CompareReport(_Model):
    baseline: RunSide
    candidate: RunSide
    partial: bool
    note: str | None = None
    n_paired_cases: int
    unpaired_baseline: int
    unpaired_candidate: int
    metrics: dict[str, MetricComparison]
    only_in_baseline: list[str]
    only_in_candidate: list[str]
    methods: dict[str, str]


class CaseSide(_Model):
    case_index: int
    status: str
    output: Any
    parsed: Any
    error: str | None = None
    record: str


class ScoreChange(_Model):
    baseline: float
    candidate: float
    delta: float


class ChangedCase(_Model):
    case_index: int
    dataset_id: str
    case_id: str
    seed: str
    changes: dict[str, ScoreChange]
    baseline: CaseSide
    candidate: CaseSide


class ChangedCasesPage(_Model):
    baseline: RunSide
    candidate: RunSide
    partial: bool
    note: str | None = None
    cases: list[ChangedCase]
    next_cursor: str | None


class RunMean(_Model):
    run_id: str
    n: int
    mean: float | None
    ci95: tuple[float, float] | None


class VersusFirst(PairedStats):
    run_id: str
    p_value_holm: float | None


class MetricTable(_Model):
    runs: list[RunMean]
    versus_first: list[VersusFirst]


class RunsTable(_Model):
    runs: list[RunSide]
    partial: bool
    note: str | None = None
    correction: str
    metrics: dict[str, MetricTable]


class DeletedRuns(_Model):
    deleted: list[str]


# ---------------------------------------------------------------- datasets


class DatasetRevision(_Model):
    """A stored revision: ``sha256:`` + the digest of its canonical cases."""

    dataset_id: str
    revision: str
    case_count: int
    bytes: int
    created_at: str


class UploadedRevision(DatasetRevision):
    """The answer to an upload: ``created`` is False when the dataset already had
    this revision (the same content is the same revision; nothing changed)."""

    created: bool


class DatasetSummary(_Model):
    dataset_id: str
    latest: DatasetRevision
    revisions: int


class DatasetPage(_Model):
    datasets: list[DatasetSummary]
    next_cursor: str | None


class RevisionPage(_Model):
    dataset_id: str
    revisions: list[DatasetRevision]
    next_cursor: str | None


class StoredCase(_Model):
    case_id: str
    input: Any
    expected_output: Any
    metadata: Any = None


class CasePage(_Model):
    dataset_id: str
    revision: str
    cases: list[StoredCase]
    next_cursor: str | None


class DeletedRevisions(_Model):
    dataset_id: str
    deleted: list[str]
