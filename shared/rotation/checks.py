"""The one validation path for a registration's settings beyond their shapes.

``PUT /applications/{appId}``, the dry-run plan and every rotation run exactly these checks, so
what a rotation would refuse is a 400 naming the field at PUT, a problem in the plan, and (if the
world changed since) a clear ``IntegrationMisconfigured`` failure before Entra is touched.
"""

from __future__ import annotations

from typing import Protocol

from shared.adapters.vault import same_vault
from shared.domain.models import ApplicationConfig, Group
from shared.errors import FieldProblem
from shared.integrations.base import PluginRegistry
from shared.integrations.keyvault import KeyVaultIntegration
from shared.rotation.delivery import integration_problems


class GroupLookup(Protocol):
    async def find(self, group_id: str) -> Group | None: ...


async def registration_problems(
    config: ApplicationConfig,
    plugins: PluginRegistry,
    groups: GroupLookup | None,
    *,
    rotator_vault_url: str | None = None,
) -> list[FieldProblem]:
    """Every problem a rotation would refuse the registration for (no call that changes anything).

    ``rotator_vault_url``: the rotator's own vault, which holds every staged secret and stored
    credential and so is never a destination.
    """
    problems = integration_problems(config, plugins)
    for index, integration in enumerate(config.integrations):
        if (
            rotator_vault_url
            and isinstance(integration, KeyVaultIntegration)
            and same_vault(integration.vault_url, rotator_vault_url)
        ):
            problems.append(
                FieldProblem(
                    f"integrations.{index}.vaultUrl",
                    "is the rotator's own vault, which holds staged secrets and stored credentials",
                    "any other Key Vault",
                )
            )
    if config.group_id and groups is not None and await groups.find(config.group_id) is None:
        problems.append(
            FieldProblem("groupId", "names a group that does not exist", "the id of an existing group")
        )
    return problems
