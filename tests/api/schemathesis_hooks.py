"""Schemathesis hooks for tests/api/test_schemathesis.py.

A registration's ``groupId`` must name a group that exists (PUT answers 400 naming the field
otherwise, tested in tests/api/test_input_hardening.py). Generated data cannot know which groups
exist, so a well-formed ``groupId`` is pointed at the group the test creates first; malformed
values, the negative cases, are left as generated.

A custom check asserts that every 400 problem names each field and says what is allowed there.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

FUZZ_GROUP = "fuzz-group"
_GROUP_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path_parameters = case.path_parameters or {}
    if case.method.upper() == "DELETE" and path_parameters.get("groupId") == FUZZ_GROUP:
        path_parameters["groupId"] = FUZZ_GROUP + "-other"  # the shared group stays
    body = case.body
    if (
        isinstance(body, dict)
        and isinstance(body.get("groupId"), str)
        and _GROUP_ID.fullmatch(body["groupId"])
    ):
        body["groupId"] = FUZZ_GROUP


@schemathesis.check
def problems_name_the_field_and_what_is_allowed(ctx: Any, response: Any, case: Any) -> None:
    """Every 400 is a problem whose errors each name the field and say what is allowed there."""
    if response.status_code != 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/problem+json"):
        raise AssertionError(f"a 400 answered {content_type!r}, not application/problem+json")
    errors = response.json().get("errors") or []
    if not errors:
        raise AssertionError("a 400 problem without errors[]")
    for error in errors:
        if not (isinstance(error.get("field"), str) and error["field"]):
            raise AssertionError(f"a problem without a field: {error}")
        if not (isinstance(error.get("allowed"), str) and error["allowed"]):
            raise AssertionError(f"a problem without allowed: {error}")
