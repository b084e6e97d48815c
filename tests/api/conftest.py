"""The real app (function_app.py) served by the local host, over real sockets, on Azurite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import load_settings
from shared.services import Services, set_services
from tests.conftest import ROOT, base_environment, identity_credential

FUNCTION_KEY = "test-function-key"


@pytest.fixture(scope="module")
def app_host(azurite: str, sim_stack: Any) -> Iterator[object]:
    import function_app
    from devhost import DevHostThread

    settings = load_settings(base_environment(azurite, **sim_stack.app_settings()))
    services = Services(settings, credential=identity_credential(sim_stack))
    set_services(services)
    try:
        # Queue and timer triggers are off here: these tests inspect the queue themselves.
        with DevHostThread(
            function_app.app,
            port=0,
            function_key=FUNCTION_KEY,
            host_json_path=Path(ROOT, "host.json"),
            settings={"AzureWebJobsStorage": azurite},
            enable_queues=False,
            enable_timers=False,
        ) as host:
            yield host
            host.run_coroutine(services.close())
            host.run_coroutine(services.credential.close())
    finally:
        set_services(None)


@pytest.fixture
def api(app_host: object, clean_storage: None) -> Iterator[httpx.Client]:
    base_url = str(app_host.base_url).rstrip("/")
    with httpx.Client(
        base_url=f"{base_url}/api", headers={"x-functions-key": FUNCTION_KEY}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def anonymous(app_host: object) -> Iterator[httpx.Client]:
    base_url = str(app_host.base_url).rstrip("/")
    with httpx.Client(base_url=f"{base_url}/api", timeout=30) as client:
        yield client
