#!/usr/bin/env bash
# Run every test suite of `make test`. Each pytest run must collect tests: exit code 5
# ("no tests collected") is a failure here, never a silent pass.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${VIRTOPS_VENV:?}/bin/python"
status=0
summary=()

run_pytest() {
  local label="$1"; shift
  echo "=== $label ==="
  "$PY" -m pytest -p no:cacheprovider "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then
    echo "run-tests: $label collected no tests - failing" >&2
    rc=1
  fi
  summary+=("$label: rc=$rc")
  [ $rc -eq 0 ] || status=1
}

run_pytest unit tests/unit -q
run_pytest integration tests/integration -q -ra --durations=15

echo "=== summary ==="
printf '%s\n' "${summary[@]}"
exit $status
