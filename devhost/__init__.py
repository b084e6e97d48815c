"""A small local Azure Functions host for development and tests (never deployed).

It runs any ``azure.functions.FunctionApp`` (Python v2 model) the way the Functions
host does: HTTP routes with function keys, NCRONTAB timers, and Storage queue triggers
with poison-queue handling, all invocations on one event loop.

    host = DevHost(app, function_key="k", host_json_path="host.json")
    await host.start() ... await host.stop()

    with DevHostThread(app, function_key="k") as host:   # sync tests
        httpx.get(host.url("items/1"), headers={"x-functions-key": "k"})

    python -m devhost --module function_app --port 7071
"""

from devhost.discovery import FunctionLoadError, FunctionSpec, discover_functions, load_app
from devhost.host import DevHost, HostStartError
from devhost.hostjson import HostConfig, HostJsonError, QueuesOptions, load_host_json
from devhost.invoker import InvocationRecord
from devhost.ncrontab import CronParseError, CronSchedule, IntervalSchedule, parse_schedule
from devhost.queues import QueueStats
from devhost.routing import RouteTemplateError, parse_route
from devhost.settings import SettingError
from devhost.thread import DevHostThread

__all__ = [
    "CronParseError",
    "CronSchedule",
    "DevHost",
    "DevHostThread",
    "FunctionLoadError",
    "FunctionSpec",
    "HostConfig",
    "HostJsonError",
    "HostStartError",
    "IntervalSchedule",
    "InvocationRecord",
    "QueueStats",
    "QueuesOptions",
    "RouteTemplateError",
    "SettingError",
    "discover_functions",
    "load_app",
    "load_host_json",
    "parse_route",
    "parse_schedule",
]
