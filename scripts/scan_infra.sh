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
    "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
    echo "scan_infra: installed in $((SECONDS - started)) s" >&2
fi

started=$SECONDS
# --skip-download: no Prisma Cloud / Bridgecrew calls; offline, built-in checks only.
"$venv/bin/checkov" \
    --config-file infra/.checkov.yaml \
    -d infra \
    --framework bicep \
    --compact \
    --quiet \
    --skip-download \
    "$@"
echo "scan_infra: scan passed in $((SECONDS - started)) s" >&2
