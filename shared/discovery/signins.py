"""When each of an application's credentials was last used to sign in (Microsoft Graph, beta).

``GET /beta/reports/appCredentialSignInActivities?$filter=appId eq '{appId}'`` lists one
``appCredentialSignInActivity`` per credential that signed in, with ``keyId`` and
``signInActivity.lastSignInDateTime`` (learn.microsoft.com/graph/api/reportroot-list-appcredentialsigninactivities?view=graph-rest-beta;
resource: learn.microsoft.com/graph/api/resources/appcredentialsigninactivity?view=graph-rest-beta).
It needs the application permission ``AuditLog.Read.All``; without it Graph answers 403
(``PermissionMissingError`` naming the permission). A credential absent from the report has not
signed in within the report's window. The report is aggregated, so it lags real sign-ins: early
retirement waits at least a day (``shared.domain.fields.UNUSED_HOURS``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from shared.discovery.rest import get_json, same_origin_path
from shared.errors import ExternalServiceError

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials_async import AsyncTokenCredential

PERMISSION = "AuditLog.Read.All (Microsoft Graph application permission)"
REPORT_PATH = "/beta/reports/appCredentialSignInActivities"
MAX_PAGES = 20


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class GraphSignInReader:
    """``shared.rotation.ports.SignInEvidence`` over Graph's beta report, with the rotator's identity."""

    def __init__(
        self, credential: AsyncTokenCredential, graph_url: str, scope: str, http: httpx.AsyncClient
    ) -> None:
        self._credential = credential
        self._base = graph_url.rstrip("/")
        self._scope = scope
        self._http = http

    async def last_used(self, app_id: str) -> dict[str, datetime]:
        token = await self._credential.get_token(self._scope)
        headers = {"Authorization": f"Bearer {token.token}", "Accept": "application/json"}
        url: str | None = self._base + REPORT_PATH
        params: dict[str, str] | None = {"$filter": f"appId eq '{app_id}'"}
        found: dict[str, datetime] = {}
        for _ in range(MAX_PAGES):
            if url is None:
                break
            answer = await get_json(
                self._http,
                url,
                params=params,
                headers=headers,
                service="graph",
                what=f"credential sign-in activity of application {app_id}",
                permission=PERMISSION,
            )
            body = answer.body if isinstance(answer.body, dict) else {}
            for item in body.get("value") or []:
                if not isinstance(item, dict) or str(item.get("appId", "")).lower() != app_id.lower():
                    continue
                key_id = str(item.get("keyId") or "").lower()
                activity = item.get("signInActivity")
                last = _parse_time(activity.get("lastSignInDateTime")) if isinstance(activity, dict) else None
                if key_id and last is not None and (key_id not in found or last > found[key_id]):
                    found[key_id] = last
            next_link = body.get("@odata.nextLink")
            if isinstance(next_link, str) and next_link:
                if not same_origin_path(next_link, self._base, REPORT_PATH):
                    raise ExternalServiceError("Graph answered with a nextLink elsewhere", service="graph")
                url, params = next_link, None
            else:
                url = None
        return found
