"""Simulated Azure endpoints for tests and the local dev stack (never deployed).

The real SDK clients (msgraph-sdk, azure-identity, azure-keyvault-secrets) talk to these servers
over real sockets: Entra (Graph ``applications`` + OAuth2 token endpoint), the App Service
managed-identity endpoint and Key Vault secrets. ``SimulatorStack`` runs them together.
"""

from .base import (
    FaultRule,
    IssuedToken,
    LoggedRequest,
    SimClock,
    SimRequest,
    SimResponse,
    SimulatorServer,
    TokenIssuer,
    json_response,
    scope_to_audience,
)
from .entra import DEFAULT_TENANT_ID, GRAPH_RESOURCE, Application, EntraSimulator, PasswordCredential
from .keyvault import VAULT_RESOURCE, KeyVaultSimulator, SecretVersion
from .msi import ManagedIdentitySimulator
from .stack import SimulatorStack
from .tls import TlsBundle, create_tls_bundle

__all__ = [
    "DEFAULT_TENANT_ID",
    "GRAPH_RESOURCE",
    "VAULT_RESOURCE",
    "Application",
    "EntraSimulator",
    "FaultRule",
    "IssuedToken",
    "KeyVaultSimulator",
    "LoggedRequest",
    "ManagedIdentitySimulator",
    "PasswordCredential",
    "SecretVersion",
    "SimClock",
    "SimRequest",
    "SimResponse",
    "SimulatorServer",
    "SimulatorStack",
    "TlsBundle",
    "TokenIssuer",
    "create_tls_bundle",
    "json_response",
    "scope_to_audience",
]
