"""What each notification email says, rendered once as plain text and once as HTML.

A message is a list of blocks (heading, paragraph, facts, bullets, warning, secret). Both bodies are
rendered from the same blocks, so they always say the same thing; the HTML renderer escapes every
value it writes (names, error messages and addresses come from operators and services).

Subjects never carry the secret. The secret appears in a body only when the caller passes it, and
then the body starts with a warning that the email contains it.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.domain.models import ApplicationConfig, ErrorInfo, IntegrationStatus, RotationResult
from shared.domain.secret import SecretValue

PRODUCT = "Secret rotation"

# --------------------------------------------------------------------------- troubleshooting

# "Integration Deployment Failed" in the product documentation (automated-secret-rotation.txt):
# the general first step, the Key Vault, DevOps and Vercel steps, and "try manual rotation".
# The documentation has no steps for the other kinds; theirs follow the same pattern and name
# what the rotator's identity needs there.
CHECK_LOG = "Check the application log for the specific error details (the portal's Log button, or GET /api/applications/{appId}/log)."
TRY_MANUAL = "Try a manual rotation to isolate the issue (the portal's Refresh button, or POST /api/applications/{appId}/refresh)."


@functools.cache
def integration_troubleshooting(kind: str | None) -> tuple[str, ...]:
    """The failure steps the integration plugin of ``kind`` declares (``troubleshooting``)."""
    from shared.integrations.registry import default_registry

    return default_registry().troubleshooting(kind or "")


# "Secret Not Rotating Automatically" in the product documentation.
ROTATION_TROUBLESHOOTING = (
    "Verify that secret rotation is enabled for the application.",
    "Check that the application state is Active.",
    "Review the application log for errors during rotation attempts.",
    "Ensure the update threshold window has been reached.",
)

# What a failed rotation's error code means, and what to do about it.
ERROR_CODE_ADVICE: Mapping[str, str] = {
    "CredentialInvalidLifetimeAsPerAppPolicy": (
        "The tenant's app management policy refuses every lifetime the rotator tried: lower "
        "secretLifetimeDays, or ask an administrator about the policy's maximum lifetime."
    ),
    "CredentialCapReached": (
        "The application holds as many passwords as Entra ID allows (two for applications that allow "
        "personal Microsoft accounts): remove an unused password, or let the rotator retire unmanaged ones."
    ),
    "SecretNeverWorked": (
        "Entra ID never accepted the new secret within the verification window; nobody received it, the "
        "rotator removes it, and the current secret is untouched. Check Entra ID service health and the "
        "sign-in logs, then retry."
    ),
    "IntegrationMisconfigured": (
        "An integration's settings are invalid; nothing was changed. GET /api/applications/{appId}/plan "
        "lists each problem."
    ),
    "NotFound": (
        "The application (its object id) no longer exists in Entra ID, or the rotator can no longer see it."
    ),
    "Authorization_RequestDenied": (
        "The rotator's identity may not change this application: with Application.ReadWrite.OwnedBy it "
        "must be one of the application's owners."
    ),
}


def integration_steps(kind: str | None, app_id: str) -> list[str]:
    """The documentation's troubleshooting steps for a failed delivery to this kind of integration."""
    steps = [CHECK_LOG.format(appId=app_id)]
    steps.extend(integration_troubleshooting(kind))
    steps.append(TRY_MANUAL.format(appId=app_id))
    return steps


def rotation_steps(error: ErrorInfo | None, app_id: str) -> list[str]:
    steps = []
    if error is not None and error.code in ERROR_CODE_ADVICE:
        steps.append(ERROR_CODE_ADVICE[error.code].format(appId=app_id))
    steps.append(CHECK_LOG.format(appId=app_id))
    steps.extend(ROTATION_TROUBLESHOOTING[:2])
    steps.append(TRY_MANUAL.format(appId=app_id))
    return steps


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Facts:
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class WarningBlock:
    text: str


@dataclass(frozen=True)
class Secret:
    label: str
    value: SecretValue


Block = Heading | Paragraph | Facts | Bullets | WarningBlock | Secret


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str
    contains_secret: bool = False


@dataclass
class _Message:
    subject: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def render(self) -> EmailContent:
        return EmailContent(
            subject=self.subject,
            text=render_text(self.title, self.blocks),
            html=render_html(self.title, self.blocks),
            contains_secret=any(isinstance(block, Secret) for block in self.blocks),
        )


def render_text(title: str, blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, WarningBlock):
            lines += [f"WARNING: {block.text}", ""]
    lines += [title, "=" * len(title), ""]
    for block in blocks:
        if isinstance(block, Heading):
            lines += [block.text, "-" * len(block.text)]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Facts):
            width = max((len(label) for label, _ in block.rows), default=0)
            lines += [f"{label + ':':<{width + 1}} {value}" for label, value in block.rows]
            lines.append("")
        elif isinstance(block, Bullets):
            lines += [f"  - {item}" for item in block.items]
            lines.append("")
        elif isinstance(block, Secret):
            lines += [f"{block.label}:", "", f"    {block.value.reveal()}", ""]
    lines += ["--", f"{PRODUCT}: sent automatically; replies are not read."]
    return "\n".join(lines).rstrip() + "\n"


def render_html(title: str, blocks: Sequence[Block]) -> str:
    esc = _escape
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>' + esc(title) + "</title></head>",
        '<body style="font-family:Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#1b1b1b">',
    ]
    for block in blocks:
        if isinstance(block, WarningBlock):
            parts.append(
                '<p style="background:#fde7e9;border:1px solid #a4262c;padding:8px;color:#a4262c">'
                "<strong>WARNING:</strong> " + esc(block.text) + "</p>"
            )
    parts.append("<h2>" + esc(title) + "</h2>")
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("<h3>" + esc(block.text) + "</h3>")
        elif isinstance(block, Paragraph):
            parts.append("<p>" + esc(block.text) + "</p>")
        elif isinstance(block, Facts):
            rows = "".join(
                '<tr><th style="text-align:left;padding-right:12px;vertical-align:top">'
                + esc(label)
                + "</th><td>"
                + esc(value)
                + "</td></tr>"
                for label, value in block.rows
            )
            parts.append("<table>" + rows + "</table>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join("<li>" + esc(item) + "</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Secret):
            parts.append(
                "<p>"
                + esc(block.label)
                + ':</p><pre style="background:#f3f2f1;padding:8px;font-size:15px">'
                + esc(block.value.reveal())
                + "</pre>"
            )
    parts.append(
        '<hr><p style="color:#605e5c;font-size:12px">'
        + esc(PRODUCT)
        + ": sent automatically; replies are not read.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _escape(value: str) -> str:
    return html.escape(value, quote=True)


# --------------------------------------------------------------------------- formatting helpers


def format_time(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def relative_to(moment: datetime, now: datetime) -> str:
    """``in 6 days``, ``in 3 hours``, ``in less than an hour`` or ``now`` (already passed)."""
    delta = moment - now
    if delta <= timedelta(0):
        return "now"
    days, hours = delta.days, delta.seconds // 3600
    if days:
        return f"in {days} day{'s' if days != 1 else ''}"
    if hours:
        return f"in {hours} hour{'s' if hours != 1 else ''}"
    return "in less than an hour"


def format_in(moment: datetime | None, now: datetime) -> str:
    """``2025-03-01 10:00 UTC (in 6 days)``."""
    if moment is None:
        return "unknown"
    if moment <= now:
        return f"{format_time(moment)} (already passed)"
    return f"{format_time(moment)} ({relative_to(moment, now)})"


def _app_facts(app: ApplicationConfig) -> list[tuple[str, str]]:
    return [
        ("Application", app.display_name),
        ("Application (client) ID", str(app.app_id)),
        ("Object ID", str(app.object_id)),
    ]


def _kinds(app: ApplicationConfig) -> dict[str, str]:
    return {integration.name or integration.kind: integration.kind for integration in app.integrations}


def _integration_line(name: str, kind: str | None, status: IntegrationStatus) -> str:
    label = f"{name} ({kind})" if kind and kind != name else name
    if status.result == "succeeded":
        return f"{label}: delivered and verified"
    if status.result == "pending":
        return f"{label}: pending"
    error = status.error
    detail = f": {error.message} ({error.code})" if error else ""
    return f"{label}: FAILED{detail}"


def _secret_warning(app: ApplicationConfig) -> WarningBlock:
    return WarningBlock(
        f"This email contains the new client secret of {app.display_name}. Email is not encrypted end to "
        "end: store the secret where it belongs now, then delete this email. It was sent because "
        "'include secret in email' is on for this application and its risk was acknowledged."
    )


# --------------------------------------------------------------------------- the messages


def rotation_email(
    app: ApplicationConfig,
    *,
    rotation_id: str,
    rotated_at: datetime,
    expires_at: datetime | None,
    key_id: str | None,
    hint: str | None,
    integrations: Mapping[str, IntegrationStatus],
    warnings: Iterable[str] = (),
    compromised: bool = False,
    secret: SecretValue | None = None,
) -> EmailContent:
    """The rotation notice: what rotated, when, the new expiry and each integration's result."""
    failed = [name for name, status in integrations.items() if status.result == "failed"]
    suffix = f", {len(failed)} integration{'s' if len(failed) != 1 else ''} failed" if failed else ""
    subject = f"[{PRODUCT}] {app.display_name}: new client secret{suffix}"
    if secret is not None:
        subject += " (contains the secret)"
    message = _Message(subject, f"Client secret rotated: {app.display_name}")
    if secret is not None:
        message.blocks.append(_secret_warning(app))
    facts = _app_facts(app) + [
        ("Rotated at", format_time(rotated_at)),
        ("New secret expires", format_in(expires_at, rotated_at)),
        ("Key ID", key_id or "unknown"),
        ("Hint", f"{hint}..." if hint else "unknown"),
        ("Rotation ID", rotation_id),
    ]
    if compromised:
        facts.append(("Mode", "compromised: every other password of the application was removed"))
    message.blocks.append(Facts(tuple(facts)))
    if secret is not None:
        message.blocks.append(Secret("New client secret", secret))
    message.blocks.append(Heading("Integrations"))
    if integrations:
        kinds = _kinds(app)
        message.blocks.append(
            Bullets(
                tuple(
                    _integration_line(name, kinds.get(name), status) for name, status in integrations.items()
                )
            )
        )
        if failed:
            message.blocks.append(
                Paragraph(
                    "Integrations that failed still hold the previous secret. The rotator retries them from "
                    "the new secret every 15 minutes; a separate alert lists what to check."
                )
            )
    else:
        message.blocks.append(
            Paragraph("No integrations are configured: the new secret is only in the rotator's Key Vault.")
        )
    warning_list = tuple(warnings)
    if warning_list:
        message.blocks += [Heading("Warnings"), Bullets(warning_list)]
    message.blocks.append(
        Paragraph(
            "The previous secret keeps working until it expires; the rotator removes the expired secrets it "
            "created. If an application fails to authenticate, check that it reads the secret from its "
            "configured source and has been restarted or has reloaded its configuration."
        )
    )
    return message.render()


def rotation_failed_email(
    app: ApplicationConfig,
    *,
    rotation_id: str,
    error: ErrorInfo | None,
    failed_at: datetime,
    current_expires_at: datetime | None,
    warnings: Iterable[str] = (),
) -> EmailContent:
    """The failure alert for a rotation that did not complete (no new secret is in use)."""
    subject = f"[{PRODUCT}] ACTION NEEDED: rotation of {app.display_name} failed"
    message = _Message(subject, f"Secret rotation failed: {app.display_name}")
    facts = _app_facts(app) + [
        ("Failed at", format_time(error.at if error else failed_at)),
        ("Step", (error.step if error else None) or "unknown"),
        ("Error", f"{error.message} ({error.code})" if error else "unknown"),
        ("Rotation ID", rotation_id),
        ("Current secret expires", format_in(current_expires_at, failed_at)),
    ]
    message.blocks.append(Facts(tuple(facts)))
    message.blocks.append(
        Paragraph(
            "No new secret is in use: anything the failed attempt created is removed (at once, or by the "
            "timer when Entra ID refused), and the current secret is untouched. The rotator tries again at "
            "the next scheduled check; fix the cause before the current secret expires."
        )
    )
    warning_list = tuple(warnings)
    if warning_list:
        message.blocks += [Heading("Warnings"), Bullets(warning_list)]
    message.blocks += [Heading("What to check"), Bullets(tuple(rotation_steps(error, str(app.app_id))))]
    return message.render()


def integrations_failed_email(
    app: ApplicationConfig,
    *,
    rotation_id: str,
    rotated_at: datetime,
    expires_at: datetime | None,
    key_id: str | None,
    integrations: Mapping[str, IntegrationStatus],
) -> EmailContent:
    """The failure alert for a rotation whose new secret did not reach every integration."""
    failed = {name: status for name, status in integrations.items() if status.result == "failed"}
    count = len(failed)
    subject = (
        f"[{PRODUCT}] ACTION NEEDED: {count} integration{'s' if count != 1 else ''} of "
        f"{app.display_name} did not receive the new secret"
    )
    message = _Message(subject, f"Secret delivery failed: {app.display_name}")
    message.blocks.append(
        Facts(
            tuple(
                _app_facts(app)
                + [
                    ("Rotated at", format_time(rotated_at)),
                    ("New secret expires", format_in(expires_at, rotated_at)),
                    ("Key ID", key_id or "unknown"),
                    ("Rotation ID", rotation_id),
                ]
            )
        )
    )
    message.blocks.append(
        Paragraph(
            "The new secret works and is staged in the rotator's Key Vault, but the integrations below still "
            "hold the previous secret, which keeps working until it expires. The rotator retries them every "
            "15 minutes."
        )
    )
    kinds = _kinds(app)
    for name, status in failed.items():
        kind = kinds.get(name)
        message.blocks.append(Heading(f"{name} ({kind})" if kind else name))
        error = status.error
        message.blocks.append(
            Facts(
                (
                    ("Error", f"{error.message} ({error.code})" if error else "unknown"),
                    ("At", format_time(status.at)),
                )
            )
        )
        message.blocks += [
            Paragraph("What to check:"),
            Bullets(tuple(integration_steps(kind, str(app.app_id)))),
        ]
    return message.render()


def threshold_email(
    app: ApplicationConfig,
    *,
    now: datetime,
    next_rotation_at: datetime | None,
    expires_at: datetime | None,
    alert_days: int,
    last_result: RotationResult,
) -> EmailContent:
    """The "rotation approaching" alert, sent once per secret about ``alert_days`` before rotation.

    The subject says the time actually left (the same as the body's "Next rotation"), which is
    less than ``alert_days`` when the alert goes out late (a registration made close to it).
    """
    when = relative_to(next_rotation_at, now) if next_rotation_at is not None else "soon"
    subject = f"[{PRODUCT}] {app.display_name}: secret rotation {when}"
    message = _Message(subject, f"Secret rotation approaching: {app.display_name}")
    facts = _app_facts(app) + [
        ("Next rotation", format_in(next_rotation_at, now)),
        ("Current secret expires", format_in(expires_at, now)),
        ("Last rotation", last_result.value),
    ]
    message.blocks.append(Facts(tuple(facts)))
    names = [
        f"{integration.name} ({integration.kind})" for integration in app.integrations if integration.enabled
    ]
    if names:
        message.blocks += [
            Paragraph("These integrations will receive the new secret:"),
            Bullets(tuple(names)),
        ]
    else:
        message.blocks.append(
            Paragraph(
                "No integrations are configured: whoever uses this application's secret must fetch the new "
                "one from the rotator's Key Vault (or a rotation email) after the rotation."
            )
        )
    message.blocks.append(
        Paragraph(
            "Nothing needs doing if the integrations are correct. To rotate earlier, use the portal's Refresh "
            "button or POST /api/applications/" + str(app.app_id) + "/refresh."
        )
    )
    return message.render()
