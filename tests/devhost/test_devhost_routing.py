"""Route templates (ASP.NET syntax) and host.json / settings parsing: pure functions."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from devhost.hostjson import HostJsonError, QueuesOptions, load_host_json, parse_host_json
from devhost.routing import RouteTemplateError, parse_route, split_path
from devhost.settings import (
    SettingError,
    load_local_settings,
    resolve_expression,
    resolve_storage_connection,
    validate_queue_name,
)


def match(template: str, path: str) -> dict[str, str] | None:
    return parse_route(template).match(split_path(path))


def test_literals_match_case_insensitively_with_optional_trailing_slash() -> None:
    assert match("applications", "/applications") == {}
    assert match("applications", "/Applications/") == {}
    assert match("applications", "/applications/x") is None
    assert match("applications/list", "/applications") is None


def test_parameters_are_decoded_per_segment() -> None:
    assert match("apps/{id}", "/apps/a%20b") == {"id": "a b"}
    assert match("apps/{id}", "/apps/a%2Fb") == {"id": "a/b"}
    assert match("apps/{id}", "/apps/") is None
    assert match("apps/{id}/secrets/{name}", "/apps/1/secrets/s") == {"id": "1", "name": "s"}


def test_optional_and_default_values() -> None:
    assert match("apps/{id?}", "/apps") == {}
    assert match("apps/{id?}", "/apps/7") == {"id": "7"}
    assert match("apps/{page=1}", "/apps") == {"page": "1"}
    assert match("apps/{page:int=1}", "/apps/3") == {"page": "3"}


def test_catch_all() -> None:
    assert match("files/{*rest}", "/files/a/b%20c/d") == {"rest": "a/b c/d"}
    assert match("files/{*rest}", "/files") == {}
    assert match("files/{**rest}", "/files/x") == {"rest": "x"}
    with pytest.raises(RouteTemplateError):
        parse_route("files/{*rest}/more")


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        ("int", ["0", "-5", "2147483647"], ["x", "1.5", "2147483648"]),
        ("long", ["9223372036854775807"], ["9223372036854775808"]),
        ("bool", ["true", "FALSE"], ["yes", "1"]),
        (
            "guid",
            [
                "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                "6F9619FF8B86D011B42D00C04FC964FF",
                "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
            ],
            ["6f9619ff-8b86-d011-b42d", "zz9619ff-8b86-d011-b42d-00c04fc964ff"],
        ),
        ("alpha", ["abcXYZ"], ["abc1", "a-b"]),
        ("double", ["1.5", "-2", "1e3"], ["1.2.3", "x"]),
        ("decimal", ["1.5"], ["1e3"]),
        ("datetime", ["2026-01-01", "2026-01-01T10:00:00"], ["tomorrow"]),
        ("minlength(3)", ["abc"], ["ab"]),
        ("maxlength(3)", ["abc"], ["abcd"]),
        ("length(2)", ["ab"], ["abc"]),
        ("length(2,3)", ["ab", "abc"], ["a", "abcd"]),
        ("min(10)", ["10", "11"], ["9", "x"]),
        ("max(10)", ["10"], ["11"]),
        ("range(1,3)", ["1", "3"], ["0", "4"]),
        ("regex(^[a-z]{{2}}\\d$)", ["ab1", "AB1"], ["abc1", "a1"]),
    ],
)
def test_constraints(constraint: str, good: list[str], bad: list[str]) -> None:
    route = parse_route(f"v/{{value:{constraint}}}")
    for value in good:
        assert route.match(["v", value]) == {"value": value}, value
    for value in bad:
        assert route.match(["v", value]) is None, value


def test_several_constraints_and_complex_segments() -> None:
    assert match("n/{id:int:min(1)}", "/n/0") is None
    assert match("n/{id:int:min(1)}", "/n/2") == {"id": "2"}
    assert match("f/{name}.{ext}", "/f/report.tar.gz") == {"name": "report.tar", "ext": "gz"}
    assert match("v{version:int}/items", "/v2/items") == {"version": "2"}
    assert match("literal{{x}}", "/literal{x}") == {}


@pytest.mark.parametrize(
    "template",
    ["a/{id", "a/id}", "a/{id:nosuch}", "a/{}", "a//b", "a/{x}/{x}", "a?b", "a/{x:min(a)}", "{a?}.{b}"],
)
def test_invalid_templates(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        parse_route(template)


def test_empty_template_matches_the_prefix_root() -> None:
    assert match("", "/") == {}
    assert match("", "/x") is None


def test_host_json_defaults_and_overrides(tmp_path: Path) -> None:
    defaults = load_host_json(None)
    assert defaults.route_prefix == "api"
    assert defaults.queues == QueuesOptions()
    assert defaults.queues.max_dequeue_count == 5
    assert defaults.queues.batch_size == 16
    assert defaults.queues.visibility_timeout == timedelta(0)
    assert defaults.queues.message_encoding == "base64"

    path = tmp_path / "host.json"
    path.write_text(
        json.dumps(
            {
                "version": "2.0",
                "functions": ["a", "b"],
                "functionTimeout": "00:10:00",
                # .NET configuration keys are case-insensitive.
                "Extensions": {
                    "http": {"RoutePrefix": ""},
                    "queues": {
                        "maxDequeueCount": 2,
                        "visibilityTimeout": "00:00:30",
                        "batchSize": 4,
                        "maxPollingInterval": "00:00:02",
                        "messageEncoding": "None",
                    },
                },
            }
        )
    )
    config = load_host_json(path)
    assert config.route_prefix == ""
    assert config.functions == ("a", "b")
    assert config.function_timeout == timedelta(minutes=10)
    assert config.queues == QueuesOptions(
        max_dequeue_count=2,
        visibility_timeout=timedelta(seconds=30),
        batch_size=4,
        max_polling_interval=timedelta(seconds=2),
        message_encoding="none",
    )


def test_host_json_errors(tmp_path: Path) -> None:
    with pytest.raises(HostJsonError):
        parse_host_json({"extensions": {"queues": {"batchSize": 64}}})
    with pytest.raises(HostJsonError):
        parse_host_json({"extensions": {"queues": {"visibilityTimeout": "soon"}}})
    with pytest.raises(HostJsonError):
        load_host_json(tmp_path / "missing.json", missing_ok=False)
    assert load_host_json(tmp_path / "missing.json").route_prefix == "api"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(HostJsonError):
        load_host_json(broken)


def test_the_projects_host_json_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    config = load_host_json(root / "host.json")
    assert config.route_prefix == "api"
    assert config.queues.message_encoding == "base64"


def test_setting_expressions_and_connections() -> None:
    env = {"Q": "rotations", "AzureWebJobsStorage": "UseDevelopmentStorage=true", "AzureWebJobsOther": "x"}
    assert resolve_expression("%Q%-extra", env, what="t") == "rotations-extra"
    with pytest.raises(SettingError, match="'Missing'"):
        resolve_expression("%Missing%", env, what="t")
    assert resolve_storage_connection("AzureWebJobsStorage", env) == "UseDevelopmentStorage=true"
    assert resolve_storage_connection(None, env) == "UseDevelopmentStorage=true"
    assert resolve_storage_connection("Other", env) == "x"  # AzureWebJobs<name> fallback
    with pytest.raises(SettingError, match="is not set"):
        resolve_storage_connection("Nope", env)
    with pytest.raises(SettingError, match="identity-based"):
        resolve_storage_connection("Store", {"Store__queueServiceUri": "https://x"})


def test_queue_names() -> None:
    assert validate_queue_name("Rotations") == "rotations"
    for bad in ("ab", "a--b", "-ab", "ab-", "a_b", "x" * 64):
        with pytest.raises(SettingError):
            validate_queue_name(bad)


def test_local_settings_do_not_override_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "file", "B": "file", "C": None}}))
    env = {"A": "shell"}
    assert sorted(load_local_settings(path, env)) == ["B", "C"]
    assert env == {"A": "shell", "B": "file", "C": ""}
