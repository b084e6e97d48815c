"""The heap is settled once per function (issue 11: full collections over the SDKs' long-lived
objects stalled the event loop; docs/benchmarks.md, API latency)."""

from __future__ import annotations

import gc

import pytest

from shared import heap


def test_each_function_collects_and_freezes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(heap, "_settled", set())
    monkeypatch.setattr(gc, "collect", lambda *args: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    heap.settle_after_first("list_applications")
    assert calls == ["collect", "freeze"]  # garbage first, so none of it is kept for ever
    heap.settle_after_first("list_applications")
    heap.settle_after_first("list_applications")
    assert calls == ["collect", "freeze"]
    heap.settle_after_first("rotate_secret")
    assert calls == ["collect", "freeze", "collect", "freeze"]
