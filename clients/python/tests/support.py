"""What the tests share: the real ``themis`` binary on a free loopback port, a proxy
that cuts connections, a transport that records requests, and experiment builders."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Self

import httpx

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STARTUP_LIMIT = 60.0


def themis_binary() -> str:
    """``THEMIS_BIN`` (set by ``cargo test``), else the debug build of this checkout."""
    path = os.environ.get("THEMIS_BIN") or str(REPO / "target" / "debug" / "themis")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no themis binary at {path}: run `cargo build` (or `cargo test`) first")
    return path


class ThemisServer:
    """``themis serve`` on 127.0.0.1:0 with an in-memory database; stopped (SIGTERM,
    then SIGKILL) when the ``with`` block ends, whatever happened in it."""

    def __init__(self, *flags: str, env: dict[str, str] | None = None, database: str = "memory") -> None:
        command = [
            themis_binary(),
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--database",
            database,
            "--log-format",
            "json",
            *flags,
        ]
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THEMIS_"))}
        child_env.update(env or {}, RUST_LOG="info")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        self.logs: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.address = self._wait_serving()
        self.url = f"http://{self.address[0]}:{self.address[1]}"

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.logs.put(line)

    def _wait_serving(self) -> tuple[str, int]:
        seen: list[str] = []
        while True:
            try:
                line = self.logs.get(timeout=STARTUP_LIMIT)
            except queue.Empty:
                self.stop()
                raise RuntimeError("themis serve did not start:\n" + "".join(seen)) from None
            seen.append(line)
            try:
                log = json.loads(line)
            except ValueError:
                continue
            if log.get("fields", {}).get("message") == "themis is serving":
                host, _, port = log["fields"]["addr"].rpartition(":")
                return host, int(port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CuttingProxy:
    """A TCP proxy to ``upstream`` that cuts each of its first ``cuts`` connections
    once ``cut_after`` bytes of the answer went through (mid-frame, like a dropped
    network), and records the ``Last-Event-ID`` of every request it forwards."""

    def __init__(self, upstream: tuple[str, int], *, cut_after: int, cuts: int) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cut = 0
        self.last_event_ids: list[int | None] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                limit = self.cut_after if self.cuts_left > 0 else None
                self.cuts_left -= 1 if limit is not None else 0
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client, limit), daemon=True).start()

    def _requests(self, source: socket.socket, sink: socket.socket) -> None:
        while data := _recv(source):
            for line in data.decode("latin-1").split("\r\n"):
                if line.lower().startswith("get /"):
                    self.last_event_ids.append(None)
                elif line.lower().startswith("last-event-id:"):
                    self.last_event_ids[-1] = int(line.split(":", 1)[1])
            _send(sink, data)
        _close(source, sink)

    def _answers(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        while data := _recv(source):
            if limit is not None and sent + len(data) >= limit:
                _send(sink, data[: limit - sent])
                with self._lock:
                    self.cut += 1
                break
            sent += len(data)
            _send(sink, data)
        _close(source, sink)

    def close(self) -> None:
        self._listener.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


class RecordingTransport(httpx.HTTPTransport):
    """An ``httpx`` transport that keeps (method, path, status, If-None-Match) of every
    request, to see what the client asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str, int, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.requests.append(
            (request.method, request.url.path, response.status_code, request.headers.get("if-none-match"))
        )
        return response


def demo_definition(
    tag: str, cases: int = 3, datasets: int = 1, concurrency: int | None = None, **params: Any
) -> dict[str, Any]:
    """An experiment for ``builtin/demo_generator`` (``params``: ``delay_ms``,
    ``error_rate``, ``wrong_rate``): case ``i`` asks ``i+1`` and expects its answer.
    ``tag`` names the datasets, so each test has runs of its own."""
    definition: dict[str, Any] = {
        "generation": {"generator": {"name": "builtin/demo_generator", "params": params}},
        "evaluation": {"metrics": ["builtin/exact_match"], "parsers": ["builtin/json_identity"]},
        "datasets": [
            {
                "dataset_id": f"{tag}-{d}",
                "cases": [
                    {
                        "case_id": f"c{i}",
                        "input": {"question": f"{i}+1"},
                        "expected_output": {"answer": str(i + 1)},
                    }
                    for i in range(cases)
                ],
            }
            for d in range(datasets)
        ],
        "seeds": [1],
    }
    if concurrency is not None:
        definition["concurrency"] = concurrency
    return definition
