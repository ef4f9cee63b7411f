#!/usr/bin/env bash
# Run every test suite of `make test`: unit and integration tests (pytest; the integration suite
# includes the ecosystem checks: ansible-doc of every module, the execution-environment build
# context, the changelog, and the docs site built with antsibull-docs and opened in headless
# Chromium), then `ansible-test sanity` and the linters (ruff, ruff format, ansible-lint).
# Each pytest run must collect tests: exit code 5 ("no tests collected") is a failure here, never a
# silent pass. Every step runs even when an earlier one failed; the summary lists them all.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 1
VENV="${VIRTOPS_VENV:?}"
PY="$VENV/bin/python"
status=0
summary=()

record() {
  local label="$1" rc="$2" seconds="$3"
  summary+=("$label: rc=$rc (${seconds}s)")
  [ "$rc" -eq 0 ] || status=1
}

run_pytest() {
  local label="$1"; shift
  local start=$SECONDS
  echo "=== $label ==="
  "$PY" -m pytest -p no:cacheprovider "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then
    echo "run-tests: $label collected no tests - failing" >&2
    rc=1
  fi
  record "$label" "$rc" $((SECONDS - start))
}

run_step() {
  local label="$1"; shift
  local start=$SECONDS
  echo "=== $label ==="
  "$@"
  record "$label" "$?" $((SECONDS - start))
}

run_pytest unit tests/unit -q
run_pytest integration tests/integration -q -ra --durations=15
run_pytest reliability tests/reliability -q -ra --durations=10
run_step sanity bash "$ROOT/scripts/sanity.sh"
# the same targets as `make lint` (ruff check, ruff format --check, ansible-lint --profile production)
run_step lint make -C "$ROOT" --no-print-directory -k ruff ansible-lint

echo "=== summary ==="
printf '%s\n' "${summary[@]}"
exit $status
