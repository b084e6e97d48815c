#!/usr/bin/env bash
# Security scan of the Bicep templates with checkov.
#
# checkov pins many packages, so it lives in its own virtualenv (.venv-checkov), never in the
# app's .venv. The venv is created only when missing (or when the pinned version changed).
# Every skipped check is listed, with its reason, in infra/.checkov.yaml; this script fails on
# any other finding.
set -euo pipefail

CHECKOV_VERSION="3.3.30"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CHECKOV_VENV:-$root/.venv-checkov}"
python="${PYTHON:-python3}"

cd "$root"

installed=""
if [[ -x "$venv/bin/checkov" ]]; then
    installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null || true)"
fi
if [[ "$installed" != "$CHECKOV_VERSION" ]]; then
    echo "scan_infra: installing checkov $CHECKOV_VERSION into $venv" >&2
    started=$SECONDS
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # pip's output goes to a log, shown only if the install fails.
    if ! "$venv/bin/pip" install --disable-pip-version-check "checkov==$CHECKOV_VERSION" \
        >"$venv/install.log" 2>&1; then
        cat "$venv/install.log" >&2
        echo "scan_infra: installing checkov failed" >&2
        exit 1
    fi
    echo "scan_infra: installed in $((SECONDS - started)) s" >&2
fi

started=$SECONDS
results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT
# --skip-download: no Prisma Cloud / Bridgecrew calls; offline, built-in checks only.
# The JSON copy of the results lets us fail on files checkov could not parse: it reports them
# but still exits 0, which would silently leave a template unscanned.
"$venv/bin/checkov" \
    --config-file infra/.checkov.yaml \
    -d infra \
    --framework bicep \
    --compact \
    --quiet \
    --skip-download \
    -o cli -o json \
    --output-file-path "console,$results/results.json" \
    "$@"
"$venv/bin/python" - "$results/results.json" <<'PY'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as handle:
    report = json.load(handle)
reports = report if isinstance(report, list) else [report]
parsing_errors = sum(r["summary"].get("parsing_errors", 0) for r in reports)
resources = sum(r["summary"].get("resource_count", 0) for r in reports)
if parsing_errors:
    sys.exit(
        f"scan_infra: checkov could not parse {parsing_errors} template(s); run "
        "'.venv-checkov/bin/checkov -d infra --framework bicep --skip-download' to see which "
        "(avoid newer Bicep syntax such as user-defined types and functions)"
    )
if not resources:
    sys.exit("scan_infra: checkov found no resources to scan")
PY
echo "scan_infra: scan passed in $((SECONDS - started)) s" >&2
