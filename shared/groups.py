"""Groups as the API changes them: preconditions, the group's Vercel token, and deletion only of a
group no application names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.credentials import GROUP_VERCEL, CredentialChanges
from shared.domain.models import Group
from shared.errors import ConflictError, NotFoundError
from shared.registry import PreconditionFailed, RegistryService
from shared.storage.groups import GroupStore

if TYPE_CHECKING:
    from shared.adapters.vault import VaultClient


class GroupService:
    def __init__(
        self,
        store: GroupStore,
        registry: RegistryService,
        vaults: Callable[[str], VaultClient],
        rotator_vault_url: str,
    ) -> None:
        """``vaults``: a vault client by URL (``Services.vault``); the group's token is stored in
        the rotator's vault (``rotator_vault_url``)."""
        self._store = store
        self._registry = registry
        self._vaults = vaults
        self._rotator_vault_url = rotator_vault_url

    async def put(
        self, group: Group, *, if_match: str | None, credentials: CredentialChanges
    ) -> tuple[str, bool]:
        """Create or replace a group; (etag, created).

        ``PreconditionFailed`` (412) when ``if_match`` does not hold: a different ETag, or any
        ``If-Match`` (``*`` included) for a group that does not exist (RFC 9110 section 13.1.1). The
        token in ``credentials`` is stored only after those checks, and deleted again when the
        write does not happen, so a refused request never changes the token in use.
        """
        vault = self._vaults(self._rotator_vault_url)
        group_id = group.group_id
        stored = False
        try:
            for _ in range(3):
                try:
                    current, etag = await self._store.get(group_id)
                except NotFoundError:
                    if if_match is not None:
                        raise PreconditionFailed(
                            "Group does not exist; If-Match cannot hold", group_id=group_id
                        ) from None
                    current, etag = None, None
                if if_match is not None and if_match != "*" and if_match != etag:
                    raise PreconditionFailed(
                        "Group was changed since it was read (stale If-Match)", group_id=group_id
                    )
                token = (
                    None if current is None or current.vercel is None else current.vercel.token_secret_name
                )
                credentials.check_against({} if token is None else {(GROUP_VERCEL, "tokenSecretName"): token})
                if not stored and credentials.pending:
                    await credentials.store(vault, owner=f"group:{group_id}")
                stored = True
                try:
                    if etag is None:
                        return await self._store.create(group), True
                    return await self._store.replace(group, etag), False
                except ConflictError:
                    if if_match is not None and if_match != "*":
                        raise PreconditionFailed(
                            "Group was changed since it was read (stale If-Match)", group_id=group_id
                        ) from None
                    # No precondition asked for: another write came first; apply this one on top.
            raise ConflictError("Group is changing too often; try again", group_id=group_id)
        except BaseException:
            if stored and credentials.pending:
                await credentials.discard(vault)
            raise

    async def delete(self, group_id: str, *, if_match: str | None) -> None:
        """Delete a group no application names. ``NotFoundError`` (404), ``PreconditionFailed``
        (412) when ``if_match`` does not hold, ``ConflictError`` (409) naming the applications that
        use it."""
        _, etag = await self._store.get(group_id)
        if if_match is not None and if_match != "*" and if_match != etag:
            raise PreconditionFailed(
                "Group was changed since it was read (stale If-Match)", group_id=group_id
            )
        users = await self._registry.applications_in_group(group_id)
        if users:
            raise ConflictError(
                f"Group is used by {len(users)} application(s): {', '.join(users)}; move them to another group first",
                group_id=group_id,
            )
        try:
            await self._store.delete(group_id, etag)
        except ConflictError:
            if if_match is None:
                raise ConflictError(
                    "Group changed while it was being deleted; try again", group_id=group_id
                ) from None
            raise PreconditionFailed("Group was changed since it was read", group_id=group_id) from None
