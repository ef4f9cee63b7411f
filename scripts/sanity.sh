#!/usr/bin/env bash
# Run `ansible-test sanity` for the collection, offline-capable and cached.
#
# ansible-test must run from an ansible_collections/<namespace>/<name> tree, so the checkout is
# copied (without .git, build output and caches) to
#   $VIRTOPS_CACHE/sanity/<checkout>/ansible_collections/virtops/libvirt
# (<checkout> = a hash of the checkout's path, so that two checkouts on one machine never test
# in each other's tree; two runs of one checkout wait for each other) and tested there. Every
# sanity test gets its own virtualenv from ansible-test, bootstrapped with a get-pip script
# ansible-test would download from a host that is not reachable here: the offline stand-in
# scripts/get-pip-standin.py is put where ansible-test looks for its cached copy
# (~/.ansible/test/cache/get_pip_<pip version>.py). pip itself reaches PyPI. The virtualenvs are
# kept by ansible-test (~/.ansible/test/venv), so only the first run installs anything.
#
# Usage: scripts/sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VIRTOPS_VENV:?set VIRTOPS_VENV (the Makefile does)}"
CACHE="${VIRTOPS_CACHE:-$HOME/.cache/virtops-libvirt}"
PY="$VENV/bin/python"
CHECKOUT="$(printf %s "$ROOT" | sha256sum | cut -c1-10)"
TREE="$CACHE/sanity/$CHECKOUT/ansible_collections/virtops/libvirt"
mkdir -p "$CACHE/sanity"
exec 9>"$CACHE/sanity/$CHECKOUT.lock"
flock 9

# 1. the get-pip stand-in, named after the pip version this ansible-test pins
PIP_VERSION="$("$PY" - <<'EOF'
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version='3.11'))['pip'])
EOF
)"
GET_PIP="$HOME/.ansible/test/cache/get_pip_${PIP_VERSION//./_}.py"
mkdir -p "$(dirname "$GET_PIP")"
if ! cmp -s "$ROOT/scripts/get-pip-standin.py" "$GET_PIP"; then
  cp "$ROOT/scripts/get-pip-standin.py" "$GET_PIP"
  echo "sanity: installed the offline get-pip stand-in as $GET_PIP"
fi

# 2. a fresh copy of the checkout in an ansible_collections tree (what git would ship: no .git,
#    no build output, no caches; .gitignore'd paths are excluded the same way)
rm -rf "$TREE"
mkdir -p "$TREE"
tar -C "$ROOT" -cf - \
  --exclude=./.git --exclude=./build --exclude=./collections --exclude=./.venv --exclude=./tests/output \
  --exclude=./bench/results --exclude=./docs/_build --exclude=__pycache__ --exclude='*.pyc' \
  --exclude=.pytest_cache --exclude=.ruff_cache --exclude='*.tar.gz' . | tar -C "$TREE" -xf -

# 3. ansible-test sanity. --venv: each test in its own cached virtualenv (requirements pinned by
#    ansible-test), the controller's Python 3.11 only. No test is skipped.
cd "$TREE"
start=$SECONDS
set +e
"$VENV/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
rc=$?
set -e
echo "sanity: ansible-test sanity finished in $((SECONDS - start)) s (rc=$rc)"
exit $rc
