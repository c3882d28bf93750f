"""Fixtures for the integration tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from loyalty_engine.api.app import create_app
from tests.api_support import API_NOW, Keys, prepare


@dataclass(frozen=True)
class Api:
    """The API in-process over a real database: its client, engine and keys."""

    client: TestClient
    engine: Engine
    keys: Keys


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    """The API on a fresh database of each backend, its clock fixed at API_NOW."""
    keys = prepare(engine)
    app = create_app(engine, clock=lambda: API_NOW)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, engine, keys)
