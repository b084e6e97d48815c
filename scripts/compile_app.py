#!/usr/bin/env python3
"""Compile the app's own modules to bytecode for the deployment package (azd ``prepackage`` hook).

A Flex Consumption app runs from its package, mounted read-only as wwwroot ("Run your functions
from a package file in Azure": learn.microsoft.com/azure/azure-functions/run-functions-from-deployment-package;
"Run your app from a ZIP package": learn.microsoft.com/azure/app-service/deploy-run-package), so
Python cannot write ``__pycache__`` there and would compile ``function_app.py`` and ``shared/`` again
on every cold start. The libraries are compiled by pip when the build installs them.

The bytecode is hash-checked (PEP 552, ``--invalidation-mode checked-hash``): Python uses it only
when the source's hash matches, whatever the file times in the package, so it is never stale. It
is only used by the Python version that wrote it, so it is written only when this interpreter is
the runtime's version (``RUNTIME``, as ``infra/app/function.bicep`` sets it); otherwise it says so
and writes nothing. Exit status 0 either way: the package works without it, only slower to start.

Usage: ``scripts/compile_app.py`` (from any directory; the deployer's ``python3``).
"""

from __future__ import annotations

import compileall
import py_compile
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = (3, 11)
# What the Functions host imports: the entry point and the package it imports from.
SOURCES = ("function_app.py", "shared")


def compile_app(root: Path = ROOT) -> bool:
    """Write hash-checked bytecode for ``SOURCES`` under ``root``; False if any file failed.

    ``force``: a timestamp-checked file a local run left would otherwise be kept, and a package's
    file times need not match the ones it records."""
    mode = py_compile.PycInvalidationMode.CHECKED_HASH
    results = []
    for name in SOURCES:
        path = root / name
        if path.is_dir():
            results.append(compileall.compile_dir(path, quiet=1, force=True, invalidation_mode=mode))
        else:
            results.append(compileall.compile_file(path, quiet=1, force=True, invalidation_mode=mode))
    return all(results)


def main() -> int:
    running = sys.version_info[:2]
    if running != RUNTIME:
        print(
            f"compile_app: Python {running[0]}.{running[1]} here, {RUNTIME[0]}.{RUNTIME[1]} in Azure: "
            "no bytecode written (the runtime would not use it); the app compiles at cold start"
        )
        return 0
    if not compile_app():
        print("compile_app: some modules did not compile (see above)", file=sys.stderr)
        return 1
    print(f"compile_app: bytecode written for {', '.join(SOURCES)} (hash-checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
