#!/usr/bin/env bash
# Build context (and, with podman or docker, the image) of the virtops.libvirt execution environment.
#
# Stages meta/execution-environment.yml, meta/ee-requirements.txt, meta/ee-bindep.txt and a freshly
# built collection tarball in <stage dir> (default: build/ee), so the definition's paths (relative to
# the collection root, as collections must give them) resolve, then runs
# `ansible-builder create` into <stage dir>/context. `ansible-builder build` follows when a container
# runtime is installed (none is needed for `create`).
#
# Usage: scripts/ee.sh [stage dir]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VIRTOPS_VENV:?set VIRTOPS_VENV (the Makefile does)}"
STAGE="$(realpath -m "${1:-$ROOT/build/ee}")"

rm -rf "$STAGE"
mkdir -p "$STAGE/meta" "$STAGE/tarball"
cp "$ROOT/meta/execution-environment.yml" "$STAGE/execution-environment.yml"
cp "$ROOT/meta/ee-requirements.txt" "$ROOT/meta/ee-bindep.txt" "$STAGE/meta/"
"$VENV/bin/ansible-galaxy" collection build --force --output-path "$STAGE/tarball" "$ROOT" >/dev/null
mv "$STAGE"/tarball/virtops-libvirt-*.tar.gz "$STAGE/virtops-libvirt.tar.gz"
rmdir "$STAGE/tarball"

"$VENV/bin/ansible-builder" create --file "$STAGE/execution-environment.yml" --context "$STAGE/context" \
  --output-filename Containerfile

runtime=""
for candidate in podman docker; do
  # the CLI alone is not enough: its daemon / storage must answer
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
    runtime=$candidate
    break
  fi
done
if [ -n "$runtime" ] && [ "${VIRTOPS_EE_BUILD:-1}" = 1 ]; then
  "$VENV/bin/ansible-builder" build --file "$STAGE/execution-environment.yml" --context "$STAGE/context" \
    --container-runtime "$runtime" --tag virtops-libvirt-ee:latest --output-filename Containerfile
else
  echo "ee: build context ready in $STAGE/context (no working podman/docker here, image not built:" \
       "run '<podman|docker> build -f Containerfile -t virtops-libvirt-ee $STAGE/context' where one is)"
fi
