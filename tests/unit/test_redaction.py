"""The one redactor: no userinfo, query or token-like path of a URL, and no known secret, survives."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from shared.domain.secret import SecretValue
from shared.redaction import redact_host, redact_text, redact_url, redact_value


def test_a_url_keeps_only_what_names_the_destination() -> None:
    url = "https://ops:hunter2@hooks.example.com:8443/services/T0/B0/XyZ123abcDEF456?code=abc#frag"
    assert redact_url(url) == "https://hooks.example.com:8443/services/T0/B0/***?***"
    assert redact_url("https://payroll-kv.vault.azure.net/secrets/payroll") == (
        "https://payroll-kv.vault.azure.net/secrets/payroll"
    )
    assert redact_url("https://x.webhook.azure-automation.net/webhooks?token=abc%2Fdef") == (
        "https://x.webhook.azure-automation.net/webhooks?***"
    )
    assert redact_url("https://[::1]:8080/a") == "https://[::1]:8080/a"
    assert redact_url("https://host:notaport/a") == "***"


def test_urls_inside_text_and_known_secrets_are_redacted() -> None:
    text = (
        "POST https://user:p4ss@h.example/hook/abcdef0123456789?sig=1 failed: "
        "echoed body contained s3cr3t-value"
    )
    redacted = redact_text(text, [SecretValue("s3cr3t-value"), None])
    assert redacted == "POST https://h.example/hook/***?*** failed: echoed body contained ***"
    for planted in ("p4ss", "abcdef0123456789", "sig=1", "s3cr3t-value", "user:"):
        assert planted not in redacted


def test_punctuation_after_a_url_is_kept_and_not_read_as_a_port() -> None:
    assert redact_text("Access denied to https://127.0.0.1:34709: the rotator ...") == (
        "Access denied to https://127.0.0.1:34709: the rotator ..."
    )
    assert redact_text("(see https://h.example/a?x=1).") == "(see https://h.example/a?***)."


def test_details_are_redacted_at_every_depth() -> None:
    details = {"a": ["https://u:pw@h/x?q=1", {"b": "https://h/ok"}], "n": 3}
    assert redact_value(details) == {"a": ["https://h/x?***", {"b": "https://h/ok"}], "n": 3}


def test_a_host_is_named_without_userinfo() -> None:
    assert redact_host("https://user:password@hooks.example.com/x") == "hooks.example.com"
    assert redact_host("https://hooks.example.com:444/x") == "hooks.example.com:444"


_TOKEN = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_~"), min_size=12, max_size=40
).filter(lambda t: any(c.isdigit() for c in t) and any(c.isalpha() for c in t))
_HOST = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){1,3}", fullmatch=True)


@given(
    user=st.text(alphabet="abcdefghij", min_size=1, max_size=8),
    password=_TOKEN,
    host=_HOST,
    path_token=_TOKEN,
    query=_TOKEN,
    before=st.text(max_size=30).filter(lambda t: "://" not in t),
    after=st.sampled_from(["", ".", ":", ") and more", ", then"]),
)
def test_no_credential_part_of_any_url_survives_in_any_text(
    user: str, password: str, host: str, path_token: str, query: str, before: str, after: str
) -> None:
    """Generated: userinfo, token-like path segments and query values never survive redaction."""
    assume(not any(secret in before for secret in (password, path_token, query)))
    url = f"https://{user}:{password}@{host}/hooks/{path_token}?code={query}"
    redacted = redact_text(f"{before} {url}{after}")
    for secret in (password, path_token, query):
        assert secret not in redacted
    assert host in redacted
