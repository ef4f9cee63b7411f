#!/usr/bin/env bash
# install-test-image.sh [CACHE_DIR]
#
# Install the cached test guest (see build-test-image.sh) where libvirt/QEMU
# can read it:
#
#   ${VIRTOPS_TEST_IMAGE_DIR:-/var/lib/libvirt/images/virtops-test}/
#       vmlinuz     kernel  (0644, copied only if changed)
#       initrd.img  initramfs (0644, copied only if changed)
#       data.img    64 MiB raw ext4 template (created if missing); tests
#                   attach a *copy* of it as /dev/vda -> mounted at /data
#
# Prints the kernel and initrd paths (one per line) on stdout; diagnostics
# go to stderr.  If the cache is empty, build-test-image.sh is run first.
set -euo pipefail

export PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR="${1:-${XDG_CACHE_HOME:-${HOME}/.cache}/virtops-libvirt/image}"
DEST="${VIRTOPS_TEST_IMAGE_DIR:-/var/lib/libvirt/images/virtops-test}"
DATA_SIZE=64M

log() { printf 'install-test-image: %s\n' "$*" >&2; }
die() { printf 'install-test-image: ERROR: %s\n' "$*" >&2; exit 1; }

if [[ ! -s ${CACHE_DIR}/vmlinuz || ! -s ${CACHE_DIR}/initrd.img ]]; then
    log "no cached image in ${CACHE_DIR}; building it"
    "${SCRIPT_DIR}/build-test-image.sh" "${CACHE_DIR}" >&2
fi

install -d -m 0755 "${DEST}"

# Copy atomically and only if the content differs.
for f in vmlinuz initrd.img; do
    if cmp -s "${CACHE_DIR}/${f}" "${DEST}/${f}"; then
        log "${DEST}/${f} up to date"
    else
        install -m 0644 "${CACHE_DIR}/${f}" "${DEST}/.${f}.tmp"
        mv -f "${DEST}/.${f}.tmp" "${DEST}/${f}"
        log "installed ${DEST}/${f}"
    fi
    chmod 0644 "${DEST}/${f}"
done

# Empty ext4 filesystem template for the guest's /data (fsfreeze tests).
if [[ ! -s ${DEST}/data.img ]]; then
    command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not found (install e2fsprogs)"
    tmp="${DEST}/.data.img.tmp"
    rm -f "${tmp}"
    truncate -s "${DATA_SIZE}" "${tmp}"
    mkfs.ext4 -F -q -L virtops-data "${tmp}"
    chmod 0644 "${tmp}"
    mv -f "${tmp}" "${DEST}/data.img"
    log "created ${DEST}/data.img (${DATA_SIZE} ext4)"
fi

echo "${DEST}/vmlinuz"
echo "${DEST}/initrd.img"
