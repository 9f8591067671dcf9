"""The dataset endpoints' requests, shared by the sync and async clients: an upload's
body is made here as chunks produced on demand, so a large file or a long generator of
cases is streamed, never held whole (the service streams it too)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, cast
from urllib.parse import quote

import httpx

from ._protocol import Call, _query, load
from .models import DatasetRevision, UploadedRevision

type DatasetFormat = Literal["jsonl", "csv"]
type DatasetSource = str | os.PathLike[str] | bytes | Iterable[Mapping[str, Any]]
"""A file's path, its bytes, or the cases themselves (dicts, sent as JSONL)."""

CONTENT_TYPES: dict[str, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
_SUFFIXES: dict[str, DatasetFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# Big enough that chunked encoding costs nothing, small enough to stay a stream.
CHUNK_BYTES = 64 * 1024


class CsvColumns(TypedDict, total=False):
    """Which CSV columns fill a case (CSV uploads only): ``case_id``, ``input`` (one
    column, or several making ``input`` an object of them), ``expected_output`` and
    ``metadata`` (only those columns; by default every other one)."""

    case_id: str
    input: str | Sequence[str]
    expected_output: str
    metadata: Sequence[str]


def dataset_path(dataset_id: str, tail: str = "") -> str:
    return f"/datasets/{quote(dataset_id, safe='')}{tail}"


def upload(dataset_id: str, source: DatasetSource, fmt: DatasetFormat | None, columns: CsvColumns) -> Call:
    """``PUT /datasets/{id}`` whose ``content`` is an iterator of chunks (or bytes)."""
    fmt, content = _body(source, fmt)
    if columns and fmt != "csv":
        raise ValueError(f"CSV column mapping given for a {fmt} upload: {sorted(columns)}")
    given = cast(Mapping[str, str | Sequence[str]], columns)
    params = _query(**{name: _joined(value) for name, value in given.items()})
    headers = {"content-type": CONTENT_TYPES[fmt]}
    return Call("PUT", dataset_path(dataset_id), params=params, headers=headers, content=content)


def _joined(value: str | Sequence[str]) -> str:
    return value if isinstance(value, str) else ",".join(value)


def _body(source: DatasetSource, fmt: DatasetFormat | None) -> tuple[DatasetFormat, Any]:
    if fmt is not None and fmt not in CONTENT_TYPES:
        raise ValueError(f"format must be 'jsonl' or 'csv', not {fmt!r}")
    if isinstance(source, bytes):
        if fmt is None:
            raise ValueError("say the format (format='jsonl' or 'csv') of a dataset given as bytes")
        return fmt, source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        found = fmt or _SUFFIXES.get(path.suffix.lower())
        if found is None:
            raise ValueError(f"cannot tell the format of {path} from its name: pass format='jsonl' or 'csv'")
        if not path.is_file():
            raise FileNotFoundError(f"no dataset file at {path}")
        return found, _file_chunks(path)
    if isinstance(source, Mapping):
        raise TypeError("a dataset is an iterable of cases; wrap a single case in a list")
    if fmt == "csv":
        raise ValueError("cases given as dicts are sent as JSONL; format='csv' needs a file or bytes")
    return "jsonl", _jsonl_chunks(source)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk


def _jsonl_chunks(cases: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    buffer = bytearray()
    for index, case in enumerate(cases):
        if not isinstance(case, Mapping):
            raise TypeError(f"case {index} is a {type(case).__name__}, not a dict")
        buffer += json.dumps(case, ensure_ascii=False, separators=(",", ":")).encode()
        buffer += b"\n"
        if len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def uploaded(response: httpx.Response) -> UploadedRevision:
    """``201``: a new revision; ``200``: the dataset already had it."""
    revision = load(response, DatasetRevision)
    return UploadedRevision(**revision.model_dump(), created=response.status_code == 201)


def list_datasets(limit: int, cursor: str | None) -> Call:
    return Call("GET", "/datasets", params=_query(limit=limit, cursor=cursor))


def revisions(dataset_id: str, limit: int, cursor: str | None) -> Call:
    return Call("GET", dataset_path(dataset_id), params=_query(limit=limit, cursor=cursor))


def cases(dataset_id: str, revision: str | None, limit: int, cursor: str | None) -> Call:
    params = _query(revision=revision, limit=limit, cursor=cursor)
    return Call("GET", dataset_path(dataset_id, "/cases"), params=params)


def delete(dataset_id: str, revision: str | None) -> Call:
    return Call("DELETE", dataset_path(dataset_id), params=_query(revision=revision))
