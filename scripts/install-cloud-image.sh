#!/usr/bin/env bash
# install-cloud-image.sh [CACHE_DIR]
#
# Install the cached cloud image (see build-cloud-image.sh) where libvirt/QEMU
# can read it:
#
#   ${VIRTOPS_CLOUD_IMAGE_DIR:-/var/lib/libvirt/images/virtops-cloud}/
#       vmlinuz                kernel     (0644, copied only if changed)
#       initrd.img             initramfs  (0644, copied only if changed)
#       debian-cloud.qcow2     root disk  (0644, copied only if changed); guests
#                              boot a qcow2 *overlay* of it, never the file itself
#       debian-cloud.qcow2.xz  the same, xz-compressed (if the build made it)
#
# Prints the paths (kernel, initrd, qcow2, then the .xz if there is one), one
# per line, on stdout; diagnostics go to stderr. If the cache is empty or
# stale, build-cloud-image.sh is run first (it is a no-op when cached).
set -euo pipefail

export PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_DIR="${1:-${XDG_CACHE_HOME:-${HOME}/.cache}/virtops-libvirt/cloud-image}"
DEST="${VIRTOPS_CLOUD_IMAGE_DIR:-/var/lib/libvirt/images/virtops-cloud}"

log() { printf 'install-cloud-image: %s\n' "$*" >&2; }

if [[ ! -s ${CACHE_DIR}/debian-cloud.qcow2 || ! -s ${CACHE_DIR}/vmlinuz || ! -s ${CACHE_DIR}/initrd.img ]]; then
    log "no cached image in ${CACHE_DIR}; building it"
    "${SCRIPT_DIR}/build-cloud-image.sh" "${CACHE_DIR}" >&2
fi

install -d -m 0755 "${DEST}"
# One installer at a time (two test runs starting together).
exec 9>"${DEST}/.lock"
flock 9

# Copy atomically and only if the content differs (a size check first: cmp of
# two 400 MB files that differ in size is free, of equal ones ~1 s).
FILES=(vmlinuz initrd.img debian-cloud.qcow2)
[[ -s ${CACHE_DIR}/debian-cloud.qcow2.xz ]] && FILES+=(debian-cloud.qcow2.xz)
for f in "${FILES[@]}"; do
    if [[ -f ${DEST}/${f} ]] && [[ $(stat -c %s "${CACHE_DIR}/${f}") == $(stat -c %s "${DEST}/${f}") ]] \
        && cmp -s "${CACHE_DIR}/${f}" "${DEST}/${f}"; then
        log "${DEST}/${f} up to date"
    else
        # sparse copy: the qcow2 has no holes to speak of, but it costs nothing
        cp --sparse=always "${CACHE_DIR}/${f}" "${DEST}/.${f}.tmp"
        chmod 0644 "${DEST}/.${f}.tmp"
        mv -f "${DEST}/.${f}.tmp" "${DEST}/${f}"
        log "installed ${DEST}/${f}"
    fi
done
# A build without the .xz variant leaves no stale one behind.
[[ -s ${CACHE_DIR}/debian-cloud.qcow2.xz ]] || rm -f "${DEST}/debian-cloud.qcow2.xz"

for f in "${FILES[@]}"; do
    echo "${DEST}/${f}"
done
