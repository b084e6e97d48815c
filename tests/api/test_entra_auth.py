"""ROTATOR_API_AUTH=entra: the routes are anonymous to the host and the app accepts only Entra ID
access tokens for its audience with its app role. A real client (azure-identity's client-secret
credential) gets the token from the simulated Entra ID, which signs it RS256 and publishes its JWK
set; every refusal is problem+json (401 with a Bearer challenge, 403 naming the role)."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import load_settings
from shared.services import Services, set_services
from tests.api.conftest import FUNCTION_KEY
from tests.api.test_applications_api import registration
from tests.conftest import ROOT, TENANT_ID, base_environment, identity_credential

API_AUDIENCE = "5d1f7a6e-1111-4a2b-9c3d-00000000a91e"  # the rotator API's app registration
ROLE = "SecretRotation.Manage"
PORTAL_SECRET = "portal-client-secret-0123456789"


@pytest.fixture(scope="module")
def entra_host(azurite: str, sim_stack: Any) -> Iterator[Any]:
    import azure.functions as func

    import function_app
    from devhost import DevHostThread

    env = base_environment(
        azurite,
        **sim_stack.app_settings(),
        ROTATOR_API_AUTH="entra",
        ROTATOR_API_AUDIENCE=API_AUDIENCE,
    )
    services = Services(load_settings(env), credential=identity_credential(sim_stack))
    set_services(services)
    # What function_app.py builds when ROTATOR_API_AUTH=entra at import: the same triggers,
    # anonymous to the host. Fresh blueprints: indexing an app fixes each function's auth level in
    # its builder, and function_app.app (key-checked) may have been indexed by an earlier test.
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    assert len(function_app.BLUEPRINTS) == 4  # the two HTTP blueprints below, the timer and the worker
    for name in ("shared.triggers.http_api", "shared.triggers.discovery_api"):
        app.register_functions(importlib.reload(importlib.import_module(name)).bp)
    try:
        with DevHostThread(
            app,
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
def client(entra_host: Any, clean_storage: None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{str(entra_host.base_url).rstrip('/')}/api", timeout=30) as http:
        yield http


def _portal_token(sim_stack: Any, roles: list[str]) -> str:
    """A token as the portal gets it: client credentials for the API's ``/.default`` scope."""
    from azure.identity import ClientSecretCredential

    portal = sim_stack.entra.add_application(
        f"Portal {uuid.uuid4().hex[:6]}", passwords=[{"displayName": "portal", "secretText": PORTAL_SECRET}]
    )
    sim_stack.entra.expose_api(API_AUDIENCE, {portal.app_id: roles})
    credential = ClientSecretCredential(
        TENANT_ID,
        portal.app_id,
        PORTAL_SECRET,
        authority=sim_stack.entra.authority,
        disable_instance_discovery=True,
        connection_verify=str(sim_stack.ca_pem),
    )
    try:
        return str(credential.get_token(f"{API_AUDIENCE}/.default").token)
    finally:
        credential.close()


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def test_a_token_with_the_app_role_is_served(client: httpx.Client, sim_stack: Any) -> None:
    headers = {"Authorization": f"Bearer {_portal_token(sim_stack, [ROLE])}"}
    app_id = str(uuid.uuid4())
    assert client.put(f"/applications/{app_id}", json=registration(), headers=headers).status_code == 201
    assert client.get(f"/applications/{app_id}", headers=headers).status_code == 200
    assert client.get("/health").status_code == 200  # probes stay anonymous


def test_no_token_or_a_function_key_is_a_problem_json_401_with_a_bearer_challenge(
    client: httpx.Client,
) -> None:
    for headers in ({}, {"x-functions-key": FUNCTION_KEY}, {"Authorization": "Basic dTpw"}):
        response = client.get("/applications", headers=headers)
        _assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
        assert "error=" not in response.headers["WWW-Authenticate"]  # no token: no error code (RFC 6750)


def test_bad_tokens_are_401_invalid_token(client: httpx.Client, sim_stack: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    entra = sim_stack.entra
    issuer_base = entra.url
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = {
        "not a jwt": "abc.def",
        "forged": entra.api_token(API_AUDIENCE, client_id="c", roles=[ROLE], signing_key=forged_key),
        "expired": entra.api_token(API_AUDIENCE, client_id="c", roles=[ROLE], lifetime_seconds=-600),
        "other audience": entra.api_token("api://someone-else", client_id="c", roles=[ROLE]),
        "other issuer": entra.api_token(
            API_AUDIENCE, client_id="c", roles=[ROLE], issuer_base=issuer_base + "x"
        ),
    }
    for label, token in tokens.items():
        response = client.get("/applications", headers={"Authorization": f"Bearer {token}"})
        _assert_problem(response, 401)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"], label


def test_a_token_without_the_app_role_is_a_403_naming_it(client: httpx.Client, sim_stack: Any) -> None:
    token = _portal_token(sim_stack, ["Something.Else"])
    response = client.get("/applications", headers={"Authorization": f"Bearer {token}"})
    body = _assert_problem(response, 403)
    assert ROLE in body["detail"]


def test_the_openapi_document_describes_bearer_tokens_and_problem_json_401(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"] == {
        "entraId": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    unauthorized = document["paths"]["/applications"]["get"]["responses"]["401"]
    assert "application/problem+json" in unauthorized["content"]


def test_function_app_is_anonymous_to_the_host_only_in_entra_mode() -> None:
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, function_app; "
        "print(json.dumps(sorted({f.get_trigger().auth_level.value for f in function_app.app.get_functions() "
        "if f.get_trigger().type == 'httpTrigger'})))"
    )
    levels = {}
    for mode in ("functionKey", "entra"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "ROTATOR_API_AUTH": mode},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        levels[mode] = json.loads(result.stdout.strip().splitlines()[-1])
    assert levels == {"functionKey": ["anonymous", "function"], "entra": ["anonymous"]}
