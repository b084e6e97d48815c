"""The whole simulated Azure: Entra (Graph + token endpoint), managed identity and Key Vaults.

All servers share one ``TokenIssuer`` (a token from the MSI endpoint or the token endpoint
works at Graph and every vault, for the right audience), one ``SimClock`` and one throwaway CA.
More simulators (Azure DevOps, Vercel, ARM, ACS Email...) plug in with ``add()``: build them
with ``stack.issuer``, ``stack.clock`` and ``stack.ssl_context``.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from .acs import AcsEmailSimulator
from .arm import ArmSimulator
from .base import JsonDict, SimClock, SimulatorServer, TokenIssuer
from .devops import AzureDevOpsSimulator
from .entra import DEFAULT_TENANT_ID, EntraSimulator
from .keyvault import KeyVaultSimulator
from .msi import ManagedIdentitySimulator
from .tls import TlsBundle, create_tls_bundle
from .vercel import VercelSimulator
from .webhook import WebhookSimulator


class SimulatorStack:
    """Create (not start) every simulator; ``start()`` or ``with SimulatorStack(dir) as stack:`` runs them.

    Simulators exist before ``start()``, so tests may seed them first; ports are chosen at start
    (0 = a free port).
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        keyvaults: Iterable[str] = ("rotator",),
        tenant_id: str = DEFAULT_TENANT_ID,
        entra_port: int = 0,
        msi_port: int = 0,
        keyvault_ports: Mapping[str, int] | None = None,
        msi_header: str | None = None,
        host: str = "127.0.0.1",
        extra_ports: Mapping[str, int] | None = None,
        reuse_tls: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.tenant_id = tenant_id
        self.host = host
        self.clock = SimClock()
        self.issuer = TokenIssuer()
        # reuse_tls: keep the CA (and so ROTATOR_CA_BUNDLE) of a previous run in state_dir.
        self.tls: TlsBundle = create_tls_bundle(self.state_dir, reuse=reuse_tls)
        self.ssl_context: ssl.SSLContext = self.tls.server_context()
        self.entra = EntraSimulator(
            issuer=self.issuer,
            ssl_context=self.ssl_context,
            tenant_id=tenant_id,
            clock=self.clock,
            host=host,
            port=entra_port,
        )
        self.msi = ManagedIdentitySimulator(
            issuer=self.issuer, identity_header=msi_header, clock=self.clock, host=host, port=msi_port
        )
        ports = dict(keyvault_ports or {})
        self.keyvaults: dict[str, KeyVaultSimulator] = {}
        for name in dict.fromkeys(keyvaults):  # de-duplicated, order kept
            self.keyvaults[name] = KeyVaultSimulator(
                issuer=self.issuer,
                ssl_context=self.ssl_context,
                tenant_id=tenant_id,
                name=name,
                clock=self.clock,
                host=host,
                port=ports.get(name, 0),
            )
        self._extra: dict[str, SimulatorServer] = {}
        self._running = False
        # Integration destinations: each is a server of its own on a free port.
        fixed = dict(extra_ports or {})
        self.devops = AzureDevOpsSimulator(
            issuer=self.issuer,
            ssl_context=self.ssl_context,
            clock=self.clock,
            host=host,
            port=fixed.get("devops", 0),
        )
        self.vercel = VercelSimulator(
            ssl_context=self.ssl_context, clock=self.clock, host=host, port=fixed.get("vercel", 0)
        )
        self.arm = ArmSimulator(
            issuer=self.issuer,
            ssl_context=self.ssl_context,
            keyvaults=self.keyvaults,
            clock=self.clock,
            host=host,
            port=fixed.get("arm", 0),
            tenant_id=tenant_id,
        )
        self.webhook = WebhookSimulator(
            ssl_context=self.ssl_context, clock=self.clock, host=host, port=fixed.get("webhook", 0)
        )
        self.acs = AcsEmailSimulator(
            issuer=self.issuer,
            ssl_context=self.ssl_context,
            clock=self.clock,
            host=host,
            port=fixed.get("acs", 0),
        )
        self._extra["acs"] = self.acs
        self._extra.update(
            {"devops": self.devops, "vercel": self.vercel, "arm": self.arm, "webhook": self.webhook}
        )

    # ----------------------------------------------------------------- lifecycle

    @property
    def ca_pem(self) -> Path:
        return self.tls.ca_pem

    @property
    def servers(self) -> dict[str, SimulatorServer]:
        """Every simulator by a unique key (``entra``, ``msi``, ``keyvault:<name>``, then added ones)."""
        servers: dict[str, SimulatorServer] = {"entra": self.entra, "msi": self.msi}
        servers.update({f"keyvault:{name}": vault for name, vault in self.keyvaults.items()})
        servers.update(self._extra)
        return servers

    def add(self, server: SimulatorServer, key: str | None = None) -> SimulatorServer:
        """Register another simulator (started now if the stack runs); its ``endpoints()`` join endpoints.json."""
        key = key or server.name
        if key in self.servers:
            raise ValueError(f"a simulator named {key!r} already exists")
        self._extra[key] = server
        if self._running:
            server.start()
        return server

    def start(self) -> Self:
        if self._running:
            return self
        started: list[SimulatorServer] = []
        try:
            for server in self.servers.values():
                server.start()
                started.append(server)
        except BaseException:
            for server in reversed(started):
                server.stop()
            raise
        self._running = True
        return self

    def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            server.stop()
        self._running = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all data and switches everywhere (the CA and ports stay)."""
        for server in self.servers.values():
            server.reset()
        self.clock.offset_seconds = 0
        self.issuer.revoke_all()

    # ----------------------------------------------------------------- describing the stack

    def keyvault_urls(self) -> dict[str, str]:
        return {name: vault.url for name, vault in self.keyvaults.items()}

    def app_settings(self) -> dict[str, str]:
        """Settings that point the rotator app at this stack (names from shared/config.py)."""
        settings = {
            "ROTATOR_TENANT_ID": self.tenant_id,
            "ROTATOR_GRAPH_URL": self.entra.url,
            "ROTATOR_LOGIN_AUTHORITY": self.entra.authority,
            "ROTATOR_CA_BUNDLE": str(self.ca_pem),
        }
        if "rotator" in self.keyvaults:
            settings["ROTATOR_VAULT_URL"] = self.keyvaults["rotator"].url
        settings["ROTATOR_DEVOPS_URL"] = self.devops.url
        settings["ROTATOR_VERCEL_URL"] = self.vercel.url
        settings["ROTATOR_ARM_URL"] = self.arm.url
        settings.update(self.acs.app_settings())
        settings.update(self.msi.environment())
        return settings

    def endpoints(self) -> JsonDict:
        """The content of endpoints.json."""
        data: JsonDict = {
            "tenant_id": self.tenant_id,
            "graph_url": self.entra.url,
            "login_authority": self.entra.authority,
            "msi_endpoint": self.msi.endpoint,
            "msi_header": self.msi.identity_header,
            "keyvaults": self.keyvault_urls(),
            "ca_pem": str(self.ca_pem),
        }
        for server in self._extra.values():
            data.update(server.endpoints())
        data["servers"] = {key: server.url for key, server in self.servers.items()}
        data["app_settings"] = self.app_settings()
        return data

    def write_endpoints(self, path: Path | str | None = None) -> Path:
        """Write endpoints.json atomically (a reader never sees half a file)."""
        target = Path(path) if path is not None else self.state_dir / "endpoints.json"
        temporary = target.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.endpoints(), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, target)
        return target

    # ----------------------------------------------------------------- snapshot (a restartable local stack)

    def snapshot(self) -> JsonDict:
        """What a restarted local stack needs to carry on: applications with their passwords, every
        secret version (ids kept: the rotator reads staged secrets by version), Vercel tokens and
        projects, webhook receivers, and the ARM destinations. ``restore`` loads it."""
        from .entra import graph_datetime

        with self.entra._lock:
            applications = [
                {
                    "displayName": app.display_name,
                    "appId": app.app_id,
                    "id": app.object_id,
                    "signInAudience": app.sign_in_audience,
                    "passwordCredentials": [
                        {
                            "displayName": p.display_name,
                            "secretText": p.secret_text,
                            "keyId": p.key_id,
                            "startDateTime": graph_datetime(p.start),
                            "endDateTime": graph_datetime(p.end),
                        }
                        for p in app.passwords
                    ],
                }
                for app in self.entra._apps.values()
            ]
        vaults = {}
        for name, vault in self.keyvaults.items():
            with vault._lock:
                vaults[name] = [
                    {
                        "name": v.name,
                        "version": v.version,
                        "value": v.value,
                        "contentType": v.content_type,
                        "tags": v.tags,
                        "enabled": v.enabled,
                        # The attributes too: the rotator reads a staged secret's expiry back as
                        # the application's ("exp", Key Vault secret attributes).
                        "notBefore": v.not_before,
                        "expires": v.expires,
                        "created": v.created,
                        "updated": v.updated,
                    }
                    for versions in vault._secrets.values()
                    for v in versions
                ]
        with self.vercel._lock:
            vercel = {
                "tokens": [
                    {"token": t, "teamIds": sorted(teams, key=str)}
                    for t, teams in self.vercel._tokens.items()
                ],
                "projects": [
                    {"name": p.name, "id": p.id, "teamId": p.team_id} for p in self.vercel._projects.values()
                ],
            }
        with self.webhook._lock:
            hooks = [{"token": h.token, "signingKey": h.signing_key} for h in self.webhook.hooks.values()]
        with self.arm._lock:
            arm = {
                "connections": [
                    {
                        "resourceId": c.resource_id,
                        "parameters": dict(c.parameters),
                        "allowed": sorted(c.allowed_parameters),
                    }
                    for c in self.arm.connections.values()
                ],
                "sites": [
                    {"resourceId": s.resource_id, "settings": dict(s.settings), "kind": s.kind}
                    for s in self.arm.sites.values()
                ],
                "automationAccounts": [
                    {
                        "resourceId": a.resource_id,
                        "runbooks": [
                            {"name": r.name, "parameters": r.parameters, "description": r.description}
                            for r in a.runbooks.values()
                        ],
                    }
                    for a in self.arm.accounts.values()
                ],
                "subscriptions": [
                    {
                        "subscriptionId": s.subscription_id,
                        "displayName": s.display_name,
                        "state": s.state,
                        "tenantId": s.tenant_id,
                    }
                    for s in self.arm.subscriptions.values()
                ],
                "vaults": [
                    {
                        "name": name,
                        # Only a seeded place (an unplaced vault answers at any subscription/group).
                        "subscriptionId": meta.subscription_id if meta.placed else None,
                        "resourceGroup": meta.resource_group if meta.placed else None,
                        "location": meta.location,
                        "tags": dict(meta.tags),
                        "enableRbacAuthorization": vault.enable_rbac_authorization,
                        "accessPolicies": [dict(p) for p in vault.access_policies],
                    }
                    for name, vault in self.keyvaults.items()
                    for meta in [self.arm.vault_meta(name)]
                ],
            }
        return {"applications": applications, "vaults": vaults, "vercel": vercel, "hooks": hooks, "arm": arm}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a ``snapshot()`` into this (running) stack."""
        self.seed({"applications": data.get("applications") or [], "vercel": data.get("vercel") or {}})
        for name, versions in (data.get("vaults") or {}).items():
            vault = self.keyvaults.get(name)
            if vault is None:
                continue
            for v in versions:
                vault.set_secret(
                    v["name"],
                    v["value"],
                    content_type=v.get("contentType"),
                    tags=v.get("tags"),
                    enabled=bool(v.get("enabled", True)),
                    not_before=v.get("notBefore"),
                    expires=v.get("expires"),
                    created=v.get("created"),
                    updated=v.get("updated"),
                    version=v["version"],
                )
        for hook in data.get("hooks") or []:
            self.webhook.add_hook(signing_key=hook.get("signingKey"), token=hook["token"])
        arm = data.get("arm") or {}
        for connection in arm.get("connections") or []:
            parameters = dict(connection.get("parameters") or {})
            restored = self.arm.add_connection(
                connection["resourceId"], client_id=parameters.get("token:clientId", "")
            )
            restored.parameters = parameters
            restored.allowed_parameters = set(connection.get("allowed") or []) | {
                k.lower() for k in parameters
            }
        rest = {k: v for k, v in arm.items() if k != "connections"}
        rest["vaults"] = [v for v in rest.get("vaults") or [] if v.get("name") in self.keyvaults]
        self.arm.seed(rest)

    # ----------------------------------------------------------------- seeding

    def seed(self, data: Mapping[str, Any]) -> None:
        """Load a seed document (the ``--seed`` file of ``python -m simulators``).

        Keys, all optional:

        - ``applications``: list of ``{"displayName", "appId"?, "id"?, "signInAudience"?,
          "passwordCredentials"?: [{"displayName", "secretText", "startDateTime"?, "endDateTime"?, "keyId"?}]}``
        - ``keyvaults``: ``{"<vault>": {"secrets": {"<name>": "value" or {"value", "contentType"?, "tags"?}}}}``
        - ``arm``: Logic App connections, sites, Automation accounts, subscriptions and the vaults' ARM
          metadata and permission model (``ArmSimulator.seed``)
        - ``switches``: ``{"entra": {...}, "msi": {...}, "keyvault:<vault>": {...}}`` (as ``POST /_sim/switches``)
        """
        for app in data.get("applications", []):
            self.entra.add_application(
                str(app["displayName"]),
                app_id=app.get("appId"),
                object_id=app.get("id"),
                sign_in_audience=app.get("signInAudience", "AzureADMyOrg"),
                passwords=app.get("passwordCredentials", []),
            )
        for vault_name, vault_data in (data.get("keyvaults") or {}).items():
            if vault_name not in self.keyvaults:
                raise ValueError(f"seed names key vault {vault_name!r}, which this stack does not run")
            vault = self.keyvaults[vault_name]
            for secret_name, spec in (vault_data.get("secrets") or {}).items():
                if isinstance(spec, str):
                    vault.set_secret(secret_name, spec)
                else:
                    vault.set_secret(
                        secret_name,
                        str(spec["value"]),
                        content_type=spec.get("contentType"),
                        tags=spec.get("tags"),
                    )
        self.devops.seed(data.get("devops") or {})
        self.vercel.seed(data.get("vercel") or {})
        self.arm.seed(data.get("arm") or {})
        for key, switches in (data.get("switches") or {}).items():
            if key not in self.servers:
                raise ValueError(f"seed sets switches of unknown simulator {key!r}")
            self.servers[key].set_switches(**switches)
