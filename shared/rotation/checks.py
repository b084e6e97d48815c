"""The one validation path for a registration's settings beyond their shapes.

``PUT /applications/{appId}``, the dry-run plan and every rotation run exactly these checks, so
what a rotation would refuse is a 400 naming the field at PUT, a problem in the plan, and (if the
world changed since) a clear ``IntegrationMisconfigured`` failure before Entra is touched.
"""

from __future__ import annotations

from typing import Protocol

from shared.domain.models import ApplicationConfig, Group
from shared.errors import FieldProblem
from shared.integrations.base import PluginRegistry
from shared.rotation.delivery import integration_problems


class GroupLookup(Protocol):
    async def find(self, group_id: str) -> Group | None: ...


async def registration_problems(
    config: ApplicationConfig, plugins: PluginRegistry, groups: GroupLookup | None
) -> list[FieldProblem]:
    """Every problem a rotation would refuse the registration for (no call that changes anything)."""
    problems = integration_problems(config, plugins)
    if config.group_id and groups is not None and await groups.find(config.group_id) is None:
        problems.append(
            FieldProblem("groupId", "names a group that does not exist", "the id of an existing group")
        )
    return problems
