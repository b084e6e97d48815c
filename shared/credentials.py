"""Write-only credentials that integrations need (a DevOps PAT, a webhook URL, a Vercel token).

The API accepts them in request bodies, stores them in the rotator's own Key Vault and keeps only
the secret's name in the configuration. They are never returned, logged or written to a table.

Every credential a request sends is stored under a name of its own (derived from what it belongs
to, plus a random suffix), and only after every check of the request has passed; the
configuration write that names it is what makes it live. A request refused after the store (a
concurrent write won) deletes what it stored, and in any case its secret is named by nothing: the
credential in use never changes unless the write that names the new one commits.

A reference name cannot be chosen by the caller (it could otherwise point a destination at another
application's secret): a request either sends the credential, or sends back the name the stored
configuration holds for that integration (as a GET shows it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.adapters.vault import VaultClient, credential_secret_name
from shared.domain.secret import SecretValue
from shared.errors import FieldProblem, ValidationError
from shared.integrations.base import PluginRegistry

if TYPE_CHECKING:
    from shared.domain.models import Integration

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


@dataclass(frozen=True)
class ClaimedReference:
    """A credential reference a request sent: it must be the one stored for ``holder`` (an
    integration's name, or ``vercel`` for a group's token)."""

    holder: str
    reference_field: str
    secret_name: str
    field: str


# Holder of a group's Vercel token in ``ClaimedReference`` and ``stored_references``.
GROUP_VERCEL = "vercel"
# The random suffix of a credential's secret name: 16 hex digits after a "-".
_SUFFIX_LENGTH = 17


@dataclass
class CredentialChanges:
    """What a request does to write-only credentials: the values it stores (under new names, already
    set as the references in its body) and the references it sent back."""

    pending: list[PendingCredential] = field(default_factory=list)
    claimed: list[ClaimedReference] = field(default_factory=list)

    def check_against(self, stored: dict[tuple[str, str], str]) -> None:
        """ValidationError (400, naming each field) for a reference sent that is not the one stored
        for its holder (``stored_references``; empty for a new registration)."""
        problems = [
            FieldProblem(
                claim.field,
                "is set by the API: send the credential itself, or the name this integration was given",
                stored.get(
                    (claim.holder, claim.reference_field), "the credential itself (nothing is stored yet)"
                ),
            )
            for claim in self.claimed
            if stored.get((claim.holder, claim.reference_field)) != claim.secret_name
        ]
        if problems:
            raise ValidationError("Credential references are set by the API", problems)

    async def store(self, vault: VaultClient, owner: str) -> None:
        """Write each pending credential to the rotator's vault (``owner``: an app id, or
        ``group:{id}``, as a tag)."""
        for credential in self.pending:
            await vault.set(
                credential.secret_name,
                credential.value,
                tags={
                    "managedBy": "entra-secret-rotator",
                    "purpose": "integration-credential",
                    "owner": owner,
                },
                content_type="text/plain",
            )

    async def discard(self, vault: VaultClient) -> None:
        """Delete what ``store`` wrote, for a request that was refused after it: no configuration
        names those secrets. Best effort: a failure is logged (names only) and left to the operator,
        since an unnamed secret is never read."""
        import logging

        for credential in self.pending:
            try:
                await vault.delete(credential.secret_name)
            except Exception:  # noqa: BLE001 - the refusal, not this cleanup, is the answer
                logging.getLogger("rotator.credentials").warning(
                    "could not delete the unused credential secret %s", credential.secret_name
                )


def new_credential_name(*parts: str) -> str:
    """A name no configuration holds yet for a credential of ``parts`` (``credential_secret_name``'s,
    shortened to fit Key Vault's 127 characters with a random suffix)."""
    import secrets

    base = credential_secret_name(*parts)[: 127 - _SUFFIX_LENGTH].rstrip("-")
    return f"{base}-{secrets.token_hex(8)}"


def stored_references(
    integrations: Sequence[Integration], plugins: PluginRegistry
) -> dict[tuple[str, str], str]:
    """The credential references a stored configuration holds: (integration name, reference field)
    to secret name."""
    references: dict[tuple[str, str], str] = {}
    for integration in integrations:
        declared = plugins.write_only(integration.kind)
        if not declared or integration.name is None:  # a stored configuration names each one
            continue
        body = integration.model_dump(by_alias=True)
        for credential in declared:
            name = body.get(credential.reference_field)
            if isinstance(name, str):
                references[(integration.name, credential.reference_field)] = name
    return references


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


def _claim(
    container: dict[str, Any], ref: str, holder: str, field: str, claimed: list[ClaimedReference]
) -> None:
    given = container.get(ref)
    if given is not None:
        claimed.append(ClaimedReference(holder, ref, given if isinstance(given, str) else repr(given), field))


def extract_integration_credentials(data: Any, app_id: str, plugins: PluginRegistry) -> CredentialChanges:
    """Pop the write-only fields each plugin declares from a raw application body and set, in place,
    the reference to the new secret each value will be stored under; note the references sent."""
    changes = CredentialChanges()
    if not isinstance(data, dict) or not isinstance(data.get("integrations"), list):
        return changes
    for index, item in enumerate(data["integrations"]):
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
            continue
        for declared in plugins.write_only(item["kind"]):
            # The name ApplicationConfig gives it (kind-N when none is sent).
            name = str(item.get("name") or f"{item['kind']}-{index + 1}")
            path = f"integrations.{index}"
            reference = f"{path}.{declared.reference_field}"
            _claim(item, declared.reference_field, name, reference, changes.claimed)
            value = _take(item, declared.input_field, f"{path}.{declared.input_field}", https=declared.https)
            if value is not None:
                secret_name = new_credential_name(app_id, name, declared.name_suffix)
                changes.pending.append(
                    PendingCredential(secret_name, value, f"{path}.{declared.input_field}")
                )
                item[declared.reference_field] = secret_name
                for field_name, default in declared.defaults:
                    item.setdefault(field_name, default)
    return changes


def extract_group_credentials(data: Any, group_id: str) -> CredentialChanges:
    changes = CredentialChanges()
    if not isinstance(data, dict) or not isinstance(data.get("vercel"), dict):
        return changes
    vercel = data["vercel"]
    _claim(vercel, "tokenSecretName", GROUP_VERCEL, "vercel.tokenSecretName", changes.claimed)
    value = _take(vercel, "token", "vercel.token")
    if value is not None:
        secret_name = new_credential_name("group", group_id, "vercel-token")
        vercel["tokenSecretName"] = secret_name
        changes.pending.append(PendingCredential(secret_name, value, "vercel.token"))
    return changes
