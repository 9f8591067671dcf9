"""Case records as a pandas DataFrame (the ``pandas`` extra)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from .models import CaseRecord


def records_to_frame(records: Iterable[CaseRecord]) -> Any:
    """One row per case record: its key, status, the reduced output, the parsed value,
    the error and one column per metric and judge id (its score, None when missing)."""
    try:
        pandas = importlib.import_module("pandas")
    except ImportError as error:
        raise ImportError("to_pandas() needs pandas: pip install 'themis-client[pandas]'") from error
    rows: list[dict[str, Any]] = []
    for record in records:
        row: dict[str, Any] = {
            "run_id": record.run_id,
            "case_index": record.case_index,
            "dataset_id": record.dataset_id,
            "case_id": record.case_id,
            "seed": record.seed,
            "status": record.status,
            "output": record.reduced.output if record.reduced else None,
            "parsed": record.parsed,
            "error": record.error.message if record.error else None,
        }
        row.update({s.metric_id: s.score for s in record.scores})
        row.update({j.judge_id: j.score for j in record.judgments})
        rows.append(row)
    return pandas.DataFrame.from_records(rows)
