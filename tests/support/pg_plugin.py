"""pytest fixtures for a real PostgreSQL server.

Register from the root ``conftest.py``::

    pytest_plugins = ["tests.support.pg_plugin"]
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session (stopped at the end)."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """SQLAlchemy asyncpg URL of a brand-new, empty database for this test."""
    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:30].strip("_")
    name = f"t{next(_counter)}_{stem}_{uuid.uuid4().hex[:8]}"
    return postgres_server.create_database(name)
