"""Build the real msgraph-sdk client against the Entra simulator, as the app will."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from azure.identity.aio import ManagedIdentityCredential
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

from simulators import GRAPH_RESOURCE, SimulatorStack


@asynccontextmanager
async def graph_client(stack: SimulatorStack) -> AsyncIterator[GraphServiceClient]:
    """GraphServiceClient with the default middleware (retry included), signed in through the MSI endpoint."""
    async with ManagedIdentityCredential() as credential:
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[f"{GRAPH_RESOURCE}/.default"], allowed_hosts=["127.0.0.1"]
        )
        # httpx 0.28 deprecates verify=<path>: hand it an SSLContext that trusts the throwaway CA.
        http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=stack.tls.client_context())
        )
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = f"{stack.entra.url}/v1.0"  # the factory path would give ".../v1.0//applications"
        try:
            yield GraphServiceClient(request_adapter=adapter)
        finally:
            await http.aclose()
