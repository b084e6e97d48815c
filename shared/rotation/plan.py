"""A dry run: what a rotation of an application would do.

No Graph call, no write anywhere: it reads the stored registration, applies the same checks the
engine runs before creating a secret, and describes each step and destination. ``blast_radius``
shapes a consumer search (``shared.discovery.consumers``, read-only) into what the next rotation
updates and what it leaves holding the old secret.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.domain.models import rfc3339
from shared.domain.schedule import is_due, next_update_at
from shared.errors import FieldProblem
from shared.integrations.base import PluginRegistry
from shared.rotation.delivery import integration_problems
from shared.storage.applications import StoredApplication

if TYPE_CHECKING:
    from shared.discovery.consumers import Discovery


def build_plan(
    stored: StoredApplication,
    plugins: PluginRegistry,
    credential_prefix: str,
    now: datetime,
    problems: list[FieldProblem] | None = None,
) -> dict[str, Any]:
    """``problems``: from ``shared.rotation.checks.registration_problems`` (the group is looked up
    there); without it, the integration checks alone."""
    config, status = stored.config, stored.status
    if problems is None:
        problems = integration_problems(config, plugins)
    lifetime = config.rotation.secret_lifetime_days
    next_update = next_update_at(config, status)
    integrations = []
    for index, integration in enumerate(config.integrations):
        plugin = plugins.get(integration.kind)
        prefix = f"integrations.{index}."
        own = [p.as_dict() for p in problems if p.field.startswith(prefix) or p.field == prefix + "kind"]
        integrations.append(
            {
                "name": integration.name,
                "kind": integration.kind,
                "enabled": integration.enabled,
                "action": plugin.describe(integration, config)
                if plugin and integration.enabled
                else "skipped",
                "problems": own,
            }
        )
    retire = (
        "keep the current and the previous credential (the previous until it expires); remove older "
        "credentials the rotator created once no destination uses them"
    )
    if config.rotation.retire_unmanaged_credentials:
        retire += ", and expired credentials it did not create (opted in)"
    return {
        "appId": str(config.app_id),
        "wouldRotateNow": is_due(config, status, now),
        "nextUpdateAt": rfc3339(next_update) if next_update else None,
        "ready": not problems and config.state == "Active",
        "steps": [
            f"check that objectId {config.object_id} is application {config.app_id} in Entra ID",
            f"create a password named '{credential_prefix}:<rotationId>' valid {lifetime} days "
            f"(until about {(now + timedelta(days=lifetime)).date().isoformat()}), or the longest the "
            "tenant's app management policy allows",
            "stage it in the rotator's Key Vault",
            "verify it by acquiring a token with it",
            *[f"deliver to {item['name']}: {item['action']}" for item in integrations if item["enabled"]],
            "notify recipients" if config.notifications.recipients else "no email (no recipients)",
            retire,
        ],
        "integrations": integrations,
        "problems": [p.as_dict() for p in problems],
    }


def blast_radius(found: Discovery) -> dict[str, Any]:
    """``updated``: consumers an enabled integration covers; ``notUpdated``: the others (they keep
    the old secret until it is retired, then break); ``gaps``: scopes the search could not read."""
    updated = [c.to_json() for c in found.consumers if c.covered_by is not None]
    not_updated = [c.to_json() for c in found.consumers if c.covered_by is None]
    return {
        "updated": updated,
        "notUpdated": not_updated,
        "gaps": [g.to_json() for g in found.gaps],
        "scanned": found.scanned,
    }
