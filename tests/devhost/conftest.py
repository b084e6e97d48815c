"""Helpers for the devhost tests. Azurite comes from the session fixture in tests/conftest.py."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def queue_name() -> str:
    """A fresh queue name per test: the Azurite instance is shared by the session."""
    return f"dh-{uuid.uuid4().hex[:16]}"
