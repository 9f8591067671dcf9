"""Fixtures: one real ``themis serve`` for the session, and a client of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support import ThemisServer
from themis_client import Client


@pytest.fixture(scope="session")
def server() -> Iterator[ThemisServer]:
    with ThemisServer() as running:
        yield running


@pytest.fixture
def client(server: ThemisServer) -> Iterator[Client]:
    with Client(server.url) as connected:
        yield connected
