#!/usr/bin/env bash
# Lint the changelog fragments and (re)generate the release notes of the version in galaxy.yml:
# changelogs/changelog.yaml and CHANGELOG.md (antsibull-changelog, config in changelogs/config.yaml).
#
# Fragments are kept (keep_fragments: true) until the version is published, so running this again
# adds new fragments and new modules/plugins (version_added of this version) to the same release.
# VIRTOPS_CHANGELOG_ROOT runs it on another copy of the collection (the tests do).
set -euo pipefail
ROOT="${VIRTOPS_CHANGELOG_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}"
VENV="${VIRTOPS_VENV:?set VIRTOPS_VENV (the Makefile does)}"
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
version="$("$VENV/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' galaxy.yml)"
antsibull-changelog lint
antsibull-changelog release --version "$version" --reload-plugins
echo "changelog: release notes of $version in $ROOT/CHANGELOG.md"
