"""OpenAI's own SDK (``openai``, pinned) driving Themis's ``/v1`` Evals API through
OpenAI's documented flows: only ``base_url`` changes."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest

from support import ThemisServer

KEY = "evals-test-key"

warnings.filterwarnings("ignore", category=DeprecationWarning)


class FakeModel:
    """An OpenAI-compatible ``/v1/chat/completions`` on a free port. It answers the last
    word of the last user message; asked for a label, the first label when the
    conversation says GOOD, else the second."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                fake.requests.append(body)
                time.sleep(delay)
                messages = body["messages"]
                text = "\n".join(m["content"] for m in messages)
                last_user = [m["content"] for m in messages if m["role"] == "user"][-1]
                if "labels and nothing else:" in text:
                    labels = text.rsplit("nothing else:", 1)[1].strip().split(", ")
                    answer = labels[0] if "GOOD" in text else labels[1]
                else:
                    answer = last_user.split()[-1]
                reply = {
                    "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                }
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeModel]:
    model = FakeModel(delay=0.05)
    yield model
    model.close()


@pytest.fixture(scope="module")
def oai(fake: FakeModel) -> Iterator[openai.OpenAI]:
    flags = ["--api-keys", KEY, "--provider", f"name=fake,base_url={fake.base_url}",
             "--default-provider", "fake"]
    with ThemisServer(*flags) as server:
        yield openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)


SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}

CRITERIA = [
    {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
     "reference": "{{item.answer}}", "operation": "eq"},
    {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
     "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match", "pass_threshold": 0.6},
]

ROWS = [
    {"item": {"question": "Capital of France?", "answer": "Paris"}, "sample": {"output_text": "Paris"}},
    {"item": {"question": "Capital of Italy?", "answer": "Rome"}, "sample": {"output_text": "Milan"}},
    {"item": {"question": "Capital of Spain?", "answer": "Madrid"}, "sample": {"output_text": "Madrid"}},
]


def wait(oai: openai.OpenAI, eval_id: str, run_id: str) -> Any:
    deadline = time.monotonic() + 60
    while True:
        run = oai.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status in ("completed", "failed", "canceled"):
            return run
        assert time.monotonic() < deadline, f"run still {run.status}"
        time.sleep(0.2)


def make_eval(oai: openai.OpenAI, criteria: list[dict[str, Any]] = CRITERIA) -> Any:
    return oai.evals.create(
        name="capitals",
        metadata={"team": "geo"},
        data_source_config={"type": "custom", "item_schema": SCHEMA, "include_sample_schema": True},
        testing_criteria=criteria,
    )


def test_rows_with_samples_are_graded_without_a_model(oai: openai.OpenAI, fake: FakeModel) -> None:
    ev = make_eval(oai)
    assert ev.id.startswith("eval_") and ev.object == "eval"
    assert ev.data_source_config.type == "custom"
    calls = len(fake.requests)
    run = oai.evals.runs.create(
        ev.id, name="samples",
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": ROWS}},
    )
    assert run.id.startswith("evalrun_") and run.status == "queued"
    assert "/ui/#/runs/run_" in run.report_url
    run = wait(oai, ev.id, run.id)
    assert run.status == "completed"
    assert run.result_counts.model_dump() == {"total": 3, "passed": 2, "failed": 1, "errored": 0}
    per = {r.testing_criteria: (r.passed, r.failed) for r in run.per_testing_criteria_results}
    assert per == {"exact": (2, 1), "close": (2, 1)}
    assert len(fake.requests) == calls, "rows with a sample need no model call"

    failed = list(oai.evals.runs.output_items.list(run.id, eval_id=ev.id, status="fail"))
    assert [i.datasource_item["answer"] for i in failed] == ["Rome"]
    item = failed[0]
    assert item.id.startswith("outputitem_") and item.status == "fail"
    assert {r.name: r.passed for r in item.results} == {"exact": False, "close": False}
    again = oai.evals.runs.output_items.retrieve(item.id, eval_id=ev.id, run_id=run.id)
    assert again.datasource_item == item.datasource_item
    passed = oai.evals.runs.output_items.list(run.id, eval_id=ev.id, status="pass")
    assert len(passed.data) == 2


def test_uploaded_file_and_completions_templates(oai: openai.OpenAI, fake: FakeModel) -> None:
    criteria = CRITERIA[:1] + [{
        "type": "label_model", "name": "judge", "model": "fake-judge",
        "input": [{"role": "user", "content": "Question: {{item.question}} Answer: {{sample.output_text}}"}],
        "labels": ["correct", "incorrect"], "passing_labels": ["correct"],
    }]
    ev = make_eval(oai, criteria)
    lines = "\n".join(json.dumps({"item": r["item"]}) for r in ROWS).encode()
    uploaded = oai.files.create(file=("capitals.jsonl", lines), purpose="evals")
    assert uploaded.id.startswith("file-") and uploaded.bytes == len(lines)
    assert oai.files.content(uploaded.id).content == lines
    run = oai.evals.runs.create(
        ev.id,
        data_source={
            "type": "completions",
            "source": {"type": "file_id", "id": uploaded.id},
            "model": "fake/small-model",
            "input_messages": {"type": "template", "template": [
                {"role": "developer", "content": "Answer with one word."},
                {"role": "user", "content": "{{item.question}} It is {{item.answer}}"},
            ]},
            "sampling_params": {"temperature": 0, "seed": 7, "max_completion_tokens": 16},
        },
    )
    run = wait(oai, ev.id, run.id)
    assert run.status == "completed", run.error
    assert run.result_counts.total == 3 and run.result_counts.errored == 0
    # The model echoes the answer: the string check passes; the judge says "incorrect"
    # (no GOOD in the conversation), so every item fails on it.
    per = {r.testing_criteria: (r.passed, r.failed) for r in run.per_testing_criteria_results}
    assert per == {"exact": (3, 0), "judge": (0, 3)}
    models = {u.run_model_name: u.invocation_count for u in run.per_model_usage}
    assert models == {"fake/small-model": 3, "fake-judge": 3}
    sent = [r for r in fake.requests if r["model"] == "small-model"]
    assert sent[-1]["messages"][1]["content"].endswith("It is " + sent[-1]["messages"][1]["content"].split()[-1])
    assert sent[-1]["max_tokens"] == 16
    item = oai.evals.runs.output_items.list(run.id, eval_id=ev.id).data[0]
    assert item.sample.output[0].content == "Paris"
    assert item.sample.input[1].role == "user"
    assert item.sample.usage.total_tokens == 12
    oai.files.delete(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(uploaded.id)


def test_list_paginate_update_cancel_delete(oai: openai.OpenAI, fake: FakeModel) -> None:
    ev = make_eval(oai)
    updated = oai.evals.update(ev.id, name="renamed", metadata={"v": "2"})
    assert updated.name == "renamed" and oai.evals.retrieve(ev.id).metadata == {"v": "2"}
    runs = [oai.evals.runs.create(ev.id, data_source={"type": "jsonl", "source": {
        "type": "file_content", "content": ROWS}}) for _ in range(3)]
    first = oai.evals.runs.list(ev.id, limit=2)
    assert len(first.data) == 2 and first.has_more
    ids = [r.id for r in oai.evals.runs.list(ev.id, limit=2)]  # auto-paginates
    assert ids == [r.id for r in runs]
    finished = [wait(oai, ev.id, r.id) for r in runs]
    assert len(oai.evals.runs.list(ev.id, status="completed").data) == 3

    # Each eval run is a Themis run: its events stream, and two runs of one eval compare
    # row by row on the same criteria.
    themis = [r.report_url.rsplit("/", 1)[1] for r in finished]
    assert len(set(themis)) == 3, "every eval run is a run of its own"
    base = str(oai.base_url).removesuffix("/v1/").removesuffix("/v1")
    headers = {"authorization": f"Bearer {KEY}"}
    events = httpx.get(f"{base}/runs/{themis[0]}/events", headers=headers, timeout=30).text
    assert "event: run_completed" in events
    report = httpx.get(f"{base}/runs/{themis[1]}/compare", params={"baseline": themis[0]},
                       headers=headers, timeout=30)
    assert report.status_code == 200, report.text
    assert report.json()["n_paired_cases"] == 3 and "exact" in report.json()["metrics"]
    assert oai.evals.runs.list(ev.id, status="failed").data == []

    slow = oai.evals.runs.create(ev.id, data_source={
        "type": "completions", "model": "slow",
        "source": {"type": "file_content", "content": [{"item": r["item"]} for r in ROWS * 30]},
        "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.answer}}"}]},
    })
    oai.evals.runs.cancel(slow.id, eval_id=ev.id)
    assert wait(oai, ev.id, slow.id).status == "canceled"
    assert oai.evals.runs.delete(slow.id, eval_id=ev.id).deleted
    with pytest.raises(openai.NotFoundError):
        oai.evals.runs.retrieve(slow.id, eval_id=ev.id)
    all_evals = [e.id for e in oai.evals.list(limit=1)]
    assert ev.id in all_evals
    assert oai.evals.delete(ev.id).deleted
    with pytest.raises(openai.NotFoundError):
        oai.evals.retrieve(ev.id)


def test_errors_have_openai_shapes(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        oai.evals.create(data_source_config={"type": "logs"}, testing_criteria=CRITERIA)
    assert bad.value.body["param"] == "data_source_config.type"
    assert "custom" in bad.value.body["message"]
    with pytest.raises(openai.BadRequestError) as cosine:
        oai.evals.create(
            data_source_config={"type": "custom", "item_schema": SCHEMA},
            testing_criteria=[dict(CRITERIA[1], evaluation_metric="cosine")],
        )
    assert cosine.value.body["param"] == "testing_criteria[0].evaluation_metric"
    with pytest.raises(openai.BadRequestError) as python:
        oai.evals.create(
            data_source_config={"type": "custom", "item_schema": SCHEMA},
            testing_criteria=[{"type": "python", "name": "py", "source": "def grade(s, i): return 1"}],
        )
    assert "sandbox" in python.value.body["message"]
    ev = make_eval(oai)
    with pytest.raises(openai.BadRequestError) as schema:
        oai.evals.runs.create(ev.id, data_source={"type": "jsonl", "source": {
            "type": "file_content", "content": [{"item": {"question": 3}}]}})
    assert schema.value.body["param"].startswith("data_source.source.content[0].item")
    with pytest.raises(openai.NotFoundError) as missing:
        oai.evals.retrieve("eval_00000000000000000000000000000000")
    assert missing.value.body["type"] == "invalid_request_error"
    unauthorized = openai.OpenAI(base_url=str(oai.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        unauthorized.evals.list()


def exported_history() -> list[dict[str, Any]]:
    """What ``client.evals.list()``, ``runs.list()`` and ``output_items.list()`` answered
    at OpenAI before the shutdown, as ``model_dump()`` writes it."""
    eval_id, run_id = "eval_" + "a1" * 16, "evalrun_" + "b2" * 16
    evals = {"object": "list", "first_id": eval_id, "last_id": eval_id, "has_more": False,
             "data": [{"object": "eval", "id": eval_id, "created_at": 1_761_000_000,
                       "name": "capitals (OpenAI)", "metadata": {},
                       "data_source_config": {"type": "custom", "schema": {
                           "type": "object", "properties": {"item": SCHEMA}, "required": ["item"]}},
                       "testing_criteria": [dict(c, id=f"{c['name']}-1") for c in CRITERIA]}]}
    runs = {"object": "list", "has_more": False, "data": [{
        "object": "eval.run", "id": run_id, "eval_id": eval_id, "created_at": 1_761_000_100,
        "name": "october", "model": "gpt-4o-mini", "status": "completed", "metadata": {},
        "data_source": {"type": "jsonl", "source": {"type": "file_id", "id": "file-x"}},
        "report_url": "https://platform.openai.com/evaluations/x", "error": None,
        "result_counts": {"total": 3, "passed": 1, "failed": 2, "errored": 0},
        "per_model_usage": [], "per_testing_criteria_results": []}]}
    answers = ["Paris", "Milan", "Seville"]
    items = {"object": "list", "has_more": False, "data": [{
        "object": "eval.run.output_item", "id": f"outputitem_{i}", "eval_id": eval_id,
        "run_id": run_id, "created_at": 1_761_000_200, "datasource_item_id": i,
        "datasource_item": row["item"], "status": "pass" if answers[i] == row["item"]["answer"] else "fail",
        "results": [{"name": c["name"], "type": c["type"], "passed": answers[i] == row["item"]["answer"],
                     "score": 1.0 if answers[i] == row["item"]["answer"] else 0.0, "sample": None}
                    for c in CRITERIA],
        "sample": {"output": [{"role": "assistant", "content": answers[i]}], "input": [],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10,
                             "cached_tokens": 0}},
    } for i, row in enumerate(ROWS)]}
    return [evals, runs, items]


def test_imported_history_is_served_and_compares_with_new_runs(tmp_path: Any) -> None:
    import subprocess

    from support import themis_binary

    export = tmp_path / "export"
    (export / "runs").mkdir(parents=True)
    evals, runs, items = exported_history()
    (export / "evals.json").write_text(json.dumps(evals))
    (export / "runs" / "october.json").write_text(json.dumps(runs))
    (export / "runs" / "october_items.jsonl").write_text(json.dumps(items) + "\n")
    database = f"sqlite://{tmp_path / 'themis.db'}"
    for expected in ("imported 1 evals and 1 runs", "already there"):
        done = subprocess.run([themis_binary(), "import", "openai-evals", str(export),
                               "--database", database], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout, done.stdout
    eval_id, run_id = evals["data"][0]["id"], runs["data"][0]["id"]
    with ThemisServer("--api-keys", KEY, database=database) as server:
        oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
        assert oai.evals.retrieve(eval_id).name == "capitals (OpenAI)"
        old = oai.evals.runs.retrieve(run_id, eval_id=eval_id)
        assert old.status == "completed" and old.result_counts.passed == 1
        failed = oai.evals.runs.output_items.list(run_id, eval_id=eval_id, status="fail")
        assert [i.datasource_item["answer"] for i in failed] == ["Rome", "Madrid"]
        assert failed.data[0].sample.output[0].content == "Milan"
        new = oai.evals.runs.create(eval_id, data_source={"type": "jsonl", "source": {
            "type": "file_content", "content": ROWS}})
        new = wait(oai, eval_id, new.id)
        assert new.result_counts.passed == 2
        # Last month's run is the baseline of this month's: row by row, Madrid improved.
        base, old_run = server.url, old.report_url.rsplit("/", 1)[1]
        report = httpx.get(f"{base}/runs/{new.report_url.rsplit('/', 1)[1]}/compare",
                           params={"baseline": old_run},
                           headers={"authorization": f"Bearer {KEY}"}, timeout=30).json()
        assert report["n_paired_cases"] == 3, report
        assert report["metrics"]["exact"]["overall"]["wins"] == 1, report


def test_score_model_multi_and_python_graders(fake: FakeModel) -> None:
    flags = ["--api-keys", KEY, "--provider", f"name=fake,base_url={fake.base_url}",
             "--default-provider", "fake", "--sandbox", "local"]
    criteria = [
        # The fake model answers the last word of the prompt: the row's own rating.
        {"type": "score_model", "name": "rating", "model": "fake/grader", "range": [0, 10],
         "pass_threshold": 5,
         "input": [{"role": "user", "content": "Rate {{sample.output_text}}: {{item.rating}}"}]},
        {"type": "multi", "name": "blend", "calculate_output": "(exact + close) / 2",
         "pass_threshold": 0.75, "graders": {
             "exact": CRITERIA[0],
             "close": {k: v for k, v in CRITERIA[1].items() if k != "pass_threshold"}}},
        {"type": "python", "name": "length", "pass_threshold": 1,
         "source": "def grade(sample, item):\n"
                   "    return 1.0 if len(sample['output_text']) == len(item['answer']) else 0.0\n"},
    ]
    rows = [
        {"item": {"answer": "Paris", "rating": "8"}, "sample": {"output_text": "Paris"}},
        {"item": {"answer": "Rome", "rating": "3"}, "sample": {"output_text": "Roma"}},
        {"item": {"answer": "Madrid", "rating": "6"}, "sample": {"output_text": "Milan"}},
    ]
    with ThemisServer(*flags) as server:
        oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
        ev = oai.evals.create(data_source_config={"type": "custom", "item_schema": {"type": "object"}},
                              testing_criteria=criteria)
        run = oai.evals.runs.create(ev.id, data_source={"type": "jsonl", "source": {
            "type": "file_content", "content": rows}})
        run = wait(oai, ev.id, run.id)
        assert run.status == "completed", run.error
        per = {r.testing_criteria: (r.passed, r.failed) for r in run.per_testing_criteria_results}
        # rating: 8 and 6 pass at 5; blend: only Paris is exact and close (Roma/Rome is
        # close but not exact: 0.5); length: Paris and Roma have the answer's length.
        assert per == {"rating": (2, 1), "blend": (1, 2), "length": (2, 1)}, per
        items = oai.evals.runs.output_items.list(run.id, eval_id=ev.id).data
        scores = {r.name: r.score for r in items[0].results}
        assert scores == {"rating": 8.0, "blend": 1.0, "length": 1.0}
        assert [i.status for i in items] == ["pass", "fail", "fail"]
