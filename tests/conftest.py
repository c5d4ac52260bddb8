"""Every async test runs twice: on asyncio (anyio's pytest plugin) and on trio
(pytest-trio). Mark a test ``@pytest.mark.single_backend("trio")`` to run it on
one only.

Async fixtures are not used: each backend's plugin would try to run them. Set up
async resources inside the test with ``async with``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

BACKENDS = (
    pytest.param("asyncio", id="asyncio"),
    pytest.param("trio", id="trio", marks=pytest.mark.trio),
)


def _is_async_test(function: Any) -> bool:
    inner = getattr(getattr(function, "hypothesis", None), "inner_test", function)
    return inspect.iscoroutinefunction(inner)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    is_test = isinstance(collector, (pytest.Module, pytest.Class)) and collector.istestfunction(
        obj, name
    )
    if is_test and _is_async_test(obj):
        pytest.mark.usefixtures("anyio_backend")(obj)


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" not in metafunc.fixturenames or not _is_async_test(metafunc.function):
        return
    marker = metafunc.definition.get_closest_marker("single_backend")
    chosen = [param for param in BACKENDS if marker is None or param.values[0] == marker.args[0]]
    metafunc.parametrize("anyio_backend", chosen)


def pytest_configure(config: pytest.Config) -> None:
    """``PRANA_TEST_STORE=postgres-cluster``: the engines of ``open_engine`` keep their
    executions in a throwaway PostgreSQL cluster (tests/postgres.py), so that the
    engine's tests run on PostgreSQL too."""
    import os

    if os.environ.get("PRANA_TEST_STORE") == "postgres-cluster":
        from tests import postgres

        os.environ["PRANA_TEST_STORE"] = postgres.database()
