"""Fixtures for the simulator tests: one stack per session, wiped before each test that uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators import SimulatorStack


@pytest.fixture(scope="session")
def simulator_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorStack]:
    with SimulatorStack(tmp_path_factory.mktemp("simulators"), keyvaults=["rotator", "demo"]) as stack:
        yield stack


@pytest.fixture
def stack(simulator_stack: SimulatorStack, monkeypatch: pytest.MonkeyPatch) -> SimulatorStack:
    """The shared stack, reset, with the App Service managed-identity variables pointing at it."""
    simulator_stack.reset()
    for name, value in simulator_stack.msi.environment().items():
        monkeypatch.setenv(name, value)
    return simulator_stack
