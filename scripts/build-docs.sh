#!/usr/bin/env bash
# Build the collection's HTML documentation site with antsibull-docs and Sphinx, offline.
#
#   scripts/build-docs.sh <dest dir>      -> <dest dir>/build/html/index.html
#
# 1. `antsibull-docs lint-collection-docs` checks docs/docsite/ (extra docs, links.yml) and every
#    plugin's and role's documentation.
# 2. `antsibull-docs sphinx-init --use-current` writes the Sphinx project for virtops.libvirt (as
#    installed through ANSIBLE_COLLECTIONS_PATH, i.e. this checkout).
# 3. Its build.sh runs `antsibull-docs collection` (module, plugin and role pages, the scenario
#    guides of docs/docsite/) and `sphinx-build -W`. No inventory is fetched from the network:
#    references to docs.ansible.com resolve through a small local intersphinx inventory
#    (scripts/docs-offline-inventory.py).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VIRTOPS_VENV:?set VIRTOPS_VENV (the Makefile does)}"
DEST="$(realpath -m "${1:?usage: build-docs.sh <dest dir>}")"
export PATH="$VENV/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="${VIRTOPS_COLLECTIONS:?set VIRTOPS_COLLECTIONS (the Makefile does)}"
COLLECTION="$ANSIBLE_COLLECTIONS_PATH/ansible_collections/virtops/libvirt"
start=$SECONDS

test -e "$COLLECTION/galaxy.yml" || { echo "build-docs: $COLLECTION is not the collection (run make collection)" >&2; exit 1; }

echo "build-docs: linting docs/docsite and the plugin documentation"
antsibull-docs lint-collection-docs --plugin-docs --skip-rstcheck "$COLLECTION"

rm -rf "$DEST"
mkdir -p "$DEST"
chmod 700 "$DEST"  # antsibull-docs insists on a directory only its owner can write to
antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
  --project virtops.libvirt --copyright 'virtops.libvirt contributors' \
  --title 'virtops.libvirt' --html-short-title 'virtops.libvirt' \
  --dest-dir "$DEST" virtops.libvirt >/dev/null

# offline: intersphinx reads only the local inventory of the docs.ansible.com labels the pages use
"$VENV/bin/python" "$ROOT/scripts/docs-offline-inventory.py" "$DEST/ansible_devel.inv"
cat >>"$DEST/conf.py" <<'EOF'

# --- virtops.libvirt: offline build -------------------------------------------------------------
# No inventory is downloaded. Labels of the Ansible docsite resolve through a local inventory that
# links to docs.ansible.com; other collections are not part of this site, so references to them are
# not checked (references inside virtops.libvirt still are, and fail the build when broken).
import os as _os
intersphinx_mapping = {
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/',
                      _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), 'ansible_devel.inv')),
}
intersphinx_disabled_reftypes = []
nitpick_ignore_regex = [
    ('std:ref', r'ansible_collections\.(?!virtops\.libvirt\.).*'),
]
EOF

(cd "$DEST" && ./build.sh)
test -s "$DEST/build/html/index.html"
echo "build-docs: site built in $((SECONDS - start)) s: $DEST/build/html/index.html"
