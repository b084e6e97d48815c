"""Write-only credentials that integrations need (a DevOps PAT, a webhook URL, a Vercel token).

The API accepts them in request bodies, stores them in the rotator's own Key Vault under a name
derived from what they belong to, and keeps only that name in the configuration. They are never
returned, logged or written to a table. A reference name cannot be chosen by the caller (it could
otherwise point a destination at another application's secret): it is always the derived one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.adapters.vault import VaultClient, credential_secret_name
from shared.domain.secret import SecretValue
from shared.errors import FieldProblem, ValidationError
from shared.integrations.base import PluginRegistry

MAX_CREDENTIAL_LENGTH = 4096
CREDENTIAL_SYNTAX = f"1 to {MAX_CREDENTIAL_LENGTH} visible ASCII characters (no spaces)"


def credential_schema(*, https: bool = False) -> dict[str, Any]:
    """The JSON Schema of a write-only credential (the OpenAPI document's): what ``_take`` takes."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CREDENTIAL_LENGTH,
        # VCHAR: 0x21-0x7E (``header_safe``).
        "pattern": "^https://[!-~]+$" if https else "^[!-~]+$",
    }


def header_safe(value: str) -> bool:
    """Whether ``value`` can be sent as a token in an HTTP header field or as a URL as it is:
    visible ASCII only (RFC 9110 section 5.5 ``VCHAR``). The credentials integrations take (a
    Vercel token, a DevOps PAT, a webhook URL) are such; anything else fails at the HTTP client,
    not at the service."""
    return value.isascii() and value.isprintable() and " " not in value


@dataclass(frozen=True)
class PendingCredential:
    secret_name: str
    value: SecretValue
    field: str


def _take(container: dict[str, Any], key: str, field: str, *, https: bool = False) -> SecretValue | None:
    if key not in container:
        return None
    value = container.pop(key)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CREDENTIAL_LENGTH or not header_safe(value):
        raise ValidationError(
            "Invalid credential",
            [FieldProblem(field, "must be a token or URL an HTTP request can carry", CREDENTIAL_SYNTAX)],
        )
    if https and not value.startswith("https://"):
        raise ValidationError(
            "Invalid credential", [FieldProblem(field, "must be an https:// URL", "https://…")]
        )
    return SecretValue(value)


def _check_reference(container: dict[str, Any], ref: str, expected: str, field: str) -> None:
    given = container.get(ref)
    if given is not None and given != expected:
        raise ValidationError(
            "Credential references are set by the API",
            [FieldProblem(field, "is set by the API; omit it or send the value it had", expected)],
        )


def extract_integration_credentials(
    data: Any, app_id: str, plugins: PluginRegistry
) -> list[PendingCredential]:
    """Pop the write-only fields each plugin declares from a raw application body; set their
    reference names in place."""
    if not isinstance(data, dict) or not isinstance(data.get("integrations"), list):
        return []
    pending: list[PendingCredential] = []
    for index, item in enumerate(data["integrations"]):
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
            continue
        for declared in plugins.write_only(item["kind"]):
            name = item.get("name") or f"{item['kind']}-{index + 1}"
            expected = credential_secret_name(app_id, str(name), declared.name_suffix)
            path = f"integrations.{index}"
            _check_reference(item, declared.reference_field, expected, f"{path}.{declared.reference_field}")
            value = _take(item, declared.input_field, f"{path}.{declared.input_field}", https=declared.https)
            if value is not None:
                pending.append(PendingCredential(expected, value, f"{path}.{declared.input_field}"))
                item[declared.reference_field] = expected
                for field, default in declared.defaults:
                    item.setdefault(field, default)
    return pending


def extract_group_credentials(data: Any, group_id: str) -> list[PendingCredential]:
    if not isinstance(data, dict) or not isinstance(data.get("vercel"), dict):
        return []
    vercel = data["vercel"]
    expected = credential_secret_name("group", group_id, "vercel-token")
    _check_reference(vercel, "tokenSecretName", expected, "vercel.tokenSecretName")
    value = _take(vercel, "token", "vercel.token")
    if value is None:
        return []
    vercel["tokenSecretName"] = expected
    return [PendingCredential(expected, value, "vercel.token")]


async def store_credentials(vault: VaultClient, pending: list[PendingCredential], owner: str) -> None:
    for credential in pending:
        await vault.set(
            credential.secret_name,
            credential.value,
            tags={"managedBy": "entra-secret-rotator", "purpose": "integration-credential", "owner": owner},
            content_type="text/plain",
        )
