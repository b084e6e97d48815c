"""Schemathesis hooks for tests/api/test_schemathesis.py.

A registration's ``groupId`` must name a group that exists (PUT answers 400 naming the field
otherwise, tested in tests/api/test_input_hardening.py). Generated data cannot know which groups
exist, so a well-formed ``groupId`` is pointed at the group the test creates first; malformed
values, the negative cases, are left as generated.
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
