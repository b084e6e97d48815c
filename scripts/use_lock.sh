#!/usr/bin/env sh
# azd service hooks (azure.yaml): the package a deployment builds installs requirements.lock
# (pinned, with hashes) as its requirements.txt; the working tree keeps the ranges.
#   use_lock.sh swap     before packaging
#   use_lock.sh restore  after packaging
set -eu
cd "$(dirname "$0")/.."
case "${1:-}" in
  swap)
    if [ -e .requirements.ranges.txt ]; then
      echo "use_lock: .requirements.ranges.txt exists (a previous package step did not restore); run 'scripts/use_lock.sh restore' first" >&2
      exit 1
    fi
    cp requirements.txt .requirements.ranges.txt
    cp requirements.lock requirements.txt
    ;;
  restore)
    if [ -e .requirements.ranges.txt ]; then
      mv .requirements.ranges.txt requirements.txt
    fi
    ;;
  *)
    echo "usage: use_lock.sh swap|restore" >&2
    exit 2
    ;;
esac
