"""``python -m devhost``: run a Functions app locally, like ``func start``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from devhost.discovery import FunctionLoadError, FunctionSpec
from devhost.host import DevHost, HostStartError
from devhost.hostjson import HostJsonError
from devhost.routing import RouteTemplateError
from devhost.settings import SettingError, load_local_settings

__all__ = ["main"]

PORT_ENV = "ROTATOR_LOCAL_PORT"
KEY_ENV = "ROTATOR_LOCAL_FUNCTION_KEY"
DEFAULT_PORT = 7071
EXIT_LOAD_ERROR = 1
EXIT_PREFLIGHT = 2


class PreflightError(Exception):
    """The preflight callable refused to start the app."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description="Run an Azure Functions (Python v2) app locally: HTTP routes, timers "
        "and queue triggers, with the Functions host's semantics.",
    )
    parser.add_argument(
        "--module", default="function_app", help="module holding the app (default: function_app)"
    )
    parser.add_argument("--attr", default="app", help="FunctionApp attribute (default: app)")
    parser.add_argument("--app-dir", default=".", help="directory to import from (default: .)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=None, help=f"HTTP port (default: ${PORT_ENV} or {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--function-key", default=None, help=f"function key (default: ${KEY_ENV} or generated)"
    )
    parser.add_argument("--master-key", default=None, help="master key (default: the function key)")
    parser.add_argument("--host-json", default=None, help="host.json (default: next to the module)")
    settings = parser.add_mutually_exclusive_group()
    settings.add_argument(
        "--settings",
        default=None,
        help="local.settings.json whose Values become env vars, unless already set "
        "(default: <app-dir>/local.settings.json, if present)",
    )
    settings.add_argument("--no-settings", action="store_true", help="do not read local.settings.json")
    parser.add_argument(
        "--preflight",
        default=None,
        metavar="MODULE:CALLABLE",
        help="called before the app is imported; if it raises, its message is printed and "
        "the exit status is 2",
    )
    parser.add_argument("--no-timers", action="store_true", help="do not schedule timer triggers")
    parser.add_argument("--no-queues", action="store_true", help="do not poll queue triggers")
    parser.add_argument(
        "--queue-poll-seconds", type=float, default=0.5, help="longest queue poll interval (0.5)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs, SDK logs included")
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if not verbose:
        # The Azure SDK logs every request at INFO: the queue polling would flood the console.
        logging.getLogger("azure").setLevel(logging.WARNING)


def run_preflight(spec: str) -> None:
    """Import and call ``module:callable``; any failure becomes a PreflightError."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise PreflightError(f"--preflight must be module:callable, got {spec!r}")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PreflightError(f"cannot load preflight {spec}: {exc}") from None
    try:
        target()
    except Exception as exc:  # noqa: BLE001 - any refusal is reported as a message, not a traceback
        raise PreflightError(str(exc) or type(exc).__name__) from None


def _print_banner(host: DevHost, key_source: str | None) -> None:
    lines = [f"devhost: {host.base_url}"]
    if key_source is None:
        lines.append(f"function key (generated): {host.function_key}")
    else:
        lines.append(f"function key: from {key_source}")
    lines.append("")
    rows = [(spec.name, spec.trigger_type, _detail(host, spec)) for spec in host.all_functions]
    if rows:
        widths = [max(len(row[i]) for row in rows) for i in range(2)]
        for name, trigger, detail in rows:
            lines.append(f"  {name:<{widths[0]}}  {trigger:<{widths[1]}}  {detail}")
    else:
        lines.append("  (no functions)")
    for name, error in host.function_errors.items():
        lines.append(f"  ! {name}: {error}")
    print("\n".join(lines), flush=True)


def _detail(host: DevHost, spec: FunctionSpec) -> str:
    if spec not in host.functions and spec.unsupported_reason is None:
        return "disabled"
    route = getattr(spec.trigger, "route", None)
    if route is not None and spec.unsupported_reason is None:
        return f"{spec.description}  {host.url(str(route))}"
    return spec.description


async def _serve(host: DevHost, key_source: str | None) -> None:
    await host.start()
    _print_banner(host, key_source)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            # A second Ctrl-C while shutting down interrupts for real.
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
        logging.getLogger("devhost").info("stopping (waiting for running invocations)")
        await host.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    log = logging.getLogger("devhost")
    app_dir = Path(args.app_dir).resolve()
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))

    try:
        settings_path = Path(args.settings) if args.settings else app_dir / "local.settings.json"
        if args.settings or (not args.no_settings and settings_path.is_file()):
            applied = load_local_settings(settings_path)
            log.info("loaded %d setting(s) from %s", len(applied), settings_path)
    except SettingError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return EXIT_LOAD_ERROR

    if args.preflight:
        try:
            run_preflight(args.preflight)
        except PreflightError as exc:
            print(f"devhost: preflight failed: {exc}", file=sys.stderr)
            return EXIT_PREFLIGHT

    port = args.port
    if port is None:
        configured = os.environ.get(PORT_ENV) or str(DEFAULT_PORT)
        if not configured.isdigit():
            print(f"devhost: ${PORT_ENV} must be a port number, got {configured!r}", file=sys.stderr)
            return EXIT_LOAD_ERROR
        port = int(configured)
    key_source: str | None = None
    function_key = args.function_key
    if function_key:
        key_source = "--function-key"
    elif os.environ.get(KEY_ENV):
        function_key, key_source = os.environ[KEY_ENV], f"${KEY_ENV}"

    try:
        host_json = Path(args.host_json) if args.host_json else None
        host = DevHost.from_module(
            args.module,
            args.attr,
            app_dir=app_dir,
            port=port,
            host=args.host,
            function_key=function_key,
            master_key=args.master_key,
            enable_timers=not args.no_timers,
            enable_queues=not args.no_queues,
            queue_poll_seconds=args.queue_poll_seconds,
            **({"host_json_path": host_json} if host_json else {}),
        )
    except (FunctionLoadError, HostJsonError, SettingError, RouteTemplateError, ImportError) as exc:
        print(f"devhost: cannot load {args.module}:{args.attr}: {exc}", file=sys.stderr)
        return EXIT_LOAD_ERROR

    try:
        asyncio.run(_serve(host, key_source))
    except (OSError, HostStartError) as exc:  # e.g. the port is taken, storage is down
        print(f"devhost: {exc}", file=sys.stderr)
        return EXIT_LOAD_ERROR
    except KeyboardInterrupt:
        pass
    return 0
