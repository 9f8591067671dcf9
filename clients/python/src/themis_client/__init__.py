"""Python client for the Themis evaluation service.

    from themis_client import Client

    with Client("http://127.0.0.1:8080") as client:
        run = client.create_run(definition).wait()
        for record in run.results():
            print(record.case_id, record.scores)

``AsyncClient`` offers the same with ``await``. Framework experiments
(``themis-eval``) run on the service through ``run_experiment``.
"""

from .aio import AsyncClient, AsyncResults, AsyncRun
from .client import Client, Results, Run
from .errors import ThemisError, UnmappableExperimentError, UnmappedSettingWarning
from .framework import EventReplay, arun_experiment, experiment_to_definition, run_experiment
from .models import (
    CaseRecord,
    ChangedCase,
    CompareReport,
    DatasetRevision,
    DatasetSummary,
    FieldError,
    RunEvent,
    RunKind,
    RunsTable,
    RunStatus,
    RunView,
    StoredCase,
    UploadedRevision,
)

__all__ = [
    "AsyncClient",
    "AsyncResults",
    "AsyncRun",
    "CaseRecord",
    "ChangedCase",
    "Client",
    "CompareReport",
    "DatasetRevision",
    "DatasetSummary",
    "EventReplay",
    "FieldError",
    "Results",
    "Run",
    "RunEvent",
    "RunKind",
    "RunStatus",
    "RunView",
    "RunsTable",
    "StoredCase",
    "ThemisError",
    "UnmappableExperimentError",
    "UnmappedSettingWarning",
    "UploadedRevision",
    "arun_experiment",
    "experiment_to_definition",
    "run_experiment",
]
