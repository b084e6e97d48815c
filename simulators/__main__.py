"""Run the simulator stack for local development.

    python -m simulators --state-dir .local/sim --keyvault rotator --keyvault demo --seed seed.json

Writes ``<state-dir>/endpoints.json`` (removed again on a clean exit), prints one line per
endpoint and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .entra import DEFAULT_TENANT_ID
from .stack import SimulatorStack


def _name_port(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {text!r}")
    return name, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulators", description=__doc__.split("\n\n")[0])
    parser.add_argument("--state-dir", required=True, type=Path, help="where ca.pem and endpoints.json go")
    parser.add_argument(
        "--keyvault",
        action="append",
        default=[],
        metavar="NAME",
        help="run a vault (repeatable; default: rotator)",
    )
    parser.add_argument("--seed", type=Path, help="JSON seed file (applications, secrets, switches)")
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID)
    parser.add_argument("--entra-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--msi-port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--keyvault-port",
        action="append",
        default=[],
        type=_name_port,
        metavar="NAME=PORT",
        help="fixed vault port",
    )
    parser.add_argument("--msi-header", help="IDENTITY_HEADER secret (default: random)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(asctime)s %(message)s"
    )
    stack = SimulatorStack(
        args.state_dir,
        keyvaults=args.keyvault or ["rotator"],
        tenant_id=args.tenant_id,
        entra_port=args.entra_port,
        msi_port=args.msi_port,
        keyvault_ports=dict(args.keyvault_port),
        msi_header=args.msi_header,
    )
    if args.seed is not None:
        stack.seed(json.loads(args.seed.read_text(encoding="utf-8")))

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    with stack:
        endpoints_file = stack.write_endpoints()
        endpoints = stack.endpoints()
        for key in ("tenant_id", "graph_url", "login_authority", "msi_endpoint", "msi_header", "ca_pem"):
            print(f"{key:<16} {endpoints[key]}")
        for key in ("arm_url", "devops_url", "vercel_url", "webhook_url", "acs_endpoint"):
            if key in endpoints:
                print(f"{key:<16} {endpoints[key]}")
        for name, url in endpoints["keyvaults"].items():
            print(f"{'keyvault:' + name:<16} {url}")
        print(f"{'endpoints_json':<16} {endpoints_file}", flush=True)
        try:
            while not stop.wait(0.5):  # short waits keep signal handling prompt
                pass
        finally:
            endpoints_file.unlink(missing_ok=True)
    print("simulators stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
