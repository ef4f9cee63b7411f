#!/usr/bin/env bash
# build-cloud-image.sh [CACHE_DIR]
#
# Build (and cache) a small real Debian cloud image with cloud-init, for the
# cloud-init integration tests and the kvm_guest role's cloud-image path:
#
#   CACHE_DIR/debian-cloud.qcow2     root filesystem (ext4 labelled `root`, no
#                                    partition table, no bootloader), qcow2
#   CACHE_DIR/debian-cloud.qcow2.xz  the same, xz-compressed (to test the
#                                    volume module's decompression); only when
#                                    VIRTOPS_CLOUD_XZ=1 (the default) and xz exists
#   CACHE_DIR/vmlinuz                the image's own kernel (linux-image-cloud-amd64)
#   CACHE_DIR/initrd.img             the image's own initramfs (initramfs-tools)
#   CACHE_DIR/stamp                  cache key (package versions + hash of this script)
#
# Default CACHE_DIR: ${XDG_CACHE_HOME:-$HOME/.cache}/virtops-libvirt/cloud-image
#
# Guests boot it by direct kernel boot: kernel/initrd from the installed copy
# (install-cloud-image.sh), cmdline `root=LABEL=root console=ttyS0`, the disk a
# qcow2 overlay of debian-cloud.qcow2. cloud-init reads a NoCloud seed (a CD-ROM
# labelled `cidata`); qemu-guest-agent runs on org.qemu.guest_agent.0.
#
# The root file system is made with `mmdebstrap --variant=minbase` from the
# host's Debian sources (no docs, man pages or locales; apt lists removed), then
# `mkfs.ext4 -d` into a sparse raw file and `qemu-img convert` to qcow2.
# Host requirements: mmdebstrap, e2fsprogs (mkfs.ext4 -d), qemu-utils, apt;
# xz-utils for the .xz variant. Runs as root (mmdebstrap's root mode: chroot).
#
# See tests/image/README.md for what the guest provides.
set -euo pipefail

export PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

CACHE_DIR="${1:-${XDG_CACHE_HOME:-${HOME}/.cache}/virtops-libvirt/cloud-image}"
SUITE=bookworm
KERNEL_META_PKG="linux-image-cloud-amd64"
# What the image runs: systemd as init, cloud-init, the guest agent, udev, and
# ifupdown + dhclient (cloud-init's ENI renderer on Debian) for network_config.
PACKAGES=(
    systemd-sysv udev cloud-init qemu-guest-agent
    ifupdown isc-dhcp-client iproute2
    "${KERNEL_META_PKG}" initramfs-tools
)
ROOT_SIZE=2G          # virtual size of the root file system (sparse; ~500 MB used)
XZ=${VIRTOPS_CLOUD_XZ:-1}
# The host's Debian sources (deb822), so the image comes from the same
# mirror/snapshot as the host; else mmdebstrap's default mirror.
MIRROR=${VIRTOPS_CLOUD_MIRROR:-}
if [[ -z ${MIRROR} && -f /etc/apt/sources.list.d/debian.sources ]]; then
    MIRROR=/etc/apt/sources.list.d/debian.sources
fi

log() { printf 'build-cloud-image: %s\n' "$*" >&2; }
die() { printf 'build-cloud-image: ERROR: %s\n' "$*" >&2; exit 1; }

for tool in mmdebstrap mkfs.ext4 qemu-img apt-cache dpkg-query flock sha256sum; do
    command -v "${tool}" >/dev/null || die "required tool '${tool}' not found (scripts/install-deps.sh)"
done
[[ ${EUID} -eq 0 ]] || die "run as root (mmdebstrap root mode, file ownership in the image)"
if [[ ${XZ} == 1 ]] && ! command -v xz >/dev/null; then
    log "xz not found: no .xz variant"
    XZ=0
fi

# --- cache key --------------------------------------------------------------
# Candidate versions of what goes into the image (the host's sources are the
# image's sources), plus the kernel behind the meta package, the builder's own
# tools and this script. One apt-cache call (each costs ~0.5-1 s without a
# persistent pkgcache.bin).
CANDIDATES=$(apt-cache show --no-all-versions "${PACKAGES[@]}" 2>/dev/null \
    | awk '/^Package:/ { p = $2 } /^Version:/ { print p "=" $2 } /^Depends:/ && p == "'"${KERNEL_META_PKG}"'" { print "depends=" $0 }')
KERNEL_PKG=$(sed -n 's/^depends=.*\(linux-image-[0-9][^ ,]*-cloud-amd64\).*/\1/p' <<<"${CANDIDATES}" | head -n1)
[[ -n ${KERNEL_PKG} ]] || die "cannot resolve ${KERNEL_META_PKG} via apt-cache (run apt-get update?)"
KERNEL_VERSION=$(apt-cache show --no-all-versions "${KERNEL_PKG}" | awk '/^Version:/ { print $2; exit }')
tool_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }
SCRIPT_HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
CACHE_KEY=$(printf '%s\n' \
    "$(grep -v '^depends=' <<<"${CANDIDATES}" | sort)" \
    "kernel=${KERNEL_PKG} ${KERNEL_VERSION}" \
    "mmdebstrap=$(tool_version mmdebstrap)" \
    "e2fsprogs=$(tool_version e2fsprogs)" \
    "xz=${XZ}" \
    "builder=${SCRIPT_HASH}")

mkdir -p "${CACHE_DIR}"
# Serialise concurrent builds into the same cache dir.
exec 9>"${CACHE_DIR}/.lock"
flock 9

cache_valid() {
    [[ -s ${CACHE_DIR}/debian-cloud.qcow2 && -s ${CACHE_DIR}/vmlinuz && -s ${CACHE_DIR}/initrd.img \
        && -f ${CACHE_DIR}/stamp ]] \
        && { [[ ${XZ} != 1 ]] || [[ -s ${CACHE_DIR}/debian-cloud.qcow2.xz ]]; } \
        && [[ $(<"${CACHE_DIR}/stamp") == "${CACHE_KEY}" ]]
}
if cache_valid; then
    echo "cached: ${CACHE_DIR}"
    exit 0
fi

START=${SECONDS}
# Under the cache dir, not /tmp: the root tree and the raw image are ~2 GB
# apparent size and /tmp may be a small tmpfs.
WORK=$(mktemp -d "${CACHE_DIR}/.build.XXXXXX")
trap 'rm -rf "${WORK}"' EXIT
ROOTFS=${WORK}/root

# --- root file system -----------------------------------------------------------
# minbase + the packages above, no Recommends. dpkg leaves out docs, man pages
# and locales (the copyright files stay). The customize hooks configure the
# image for direct kernel boot from a disk labelled `root`.
log "mmdebstrap ${SUITE} (${PACKAGES[*]})"
# The hooks run in mmdebstrap's shell with $1 = the root directory: single quotes on purpose.
# shellcheck disable=SC2016
mmdebstrap --variant=minbase --mode=root --format=directory \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='echo "LABEL=root / ext4 defaults,errors=remount-ro 0 1" >"$1/etc/fstab"' \
    --customize-hook='mkdir -p "$1/etc/cloud/cloud.cfg.d"' \
    --customize-hook='cat >"$1/etc/cloud/cloud.cfg.d/01_virtops.cfg" <<EOF
# virtops test image: a NoCloud seed only (no metadata-service probes); no
# locales (minbase has no update-locale) and no sshd (no host keys to make)
datasource_list: [NoCloud, None]
locale: false
ssh_genkeytypes: []
EOF' \
    --customize-hook='mkdir -p "$1/etc/systemd/system/multi-user.target.wants"' \
    --customize-hook='ln -sf /lib/systemd/system/qemu-guest-agent.service "$1/etc/systemd/system/multi-user.target.wants/qemu-guest-agent.service"' \
    --customize-hook='rm -f "$1/etc/hostname"; : >"$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/cache/debconf/*-old' \
    "${SUITE}" "${ROOTFS}" ${MIRROR:+"${MIRROR}"} >&2

KVER=$(basename "$(find "${ROOTFS}/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
[[ -n ${KVER} && -f ${ROOTFS}/boot/vmlinuz-${KVER} && -f ${ROOTFS}/boot/initrd.img-${KVER} ]] \
    || die "no kernel/initramfs in the image (linux-image-cloud-amd64, initramfs-tools)"
cp "${ROOTFS}/boot/vmlinuz-${KVER}" "${WORK}/vmlinuz"
cp "${ROOTFS}/boot/initrd.img-${KVER}" "${WORK}/initrd.img"
# Booted directly: the copies in /boot are never read inside the guest.
rm -f "${ROOTFS}/boot/vmlinuz-${KVER}" "${ROOTFS}/boot/initrd.img-${KVER}" "${ROOTFS}"/boot/System.map-*
log "rootfs $(du -sh "${ROOTFS}" | cut -f1), kernel ${KVER}, $((SECONDS - START))s"

# --- disk image -----------------------------------------------------------------
truncate -s "${ROOT_SIZE}" "${WORK}/root.raw"
mkfs.ext4 -q -F -L root -d "${ROOTFS}" "${WORK}/root.raw"
rm -rf "${ROOTFS}"
qemu-img convert -q -f raw -O qcow2 "${WORK}/root.raw" "${WORK}/debian-cloud.qcow2"
rm -f "${WORK}/root.raw"
if [[ ${XZ} == 1 ]]; then
    t=${SECONDS}
    xz -T2 -1 -k -c "${WORK}/debian-cloud.qcow2" >"${WORK}/debian-cloud.qcow2.xz"
    log "xz: $(du -h "${WORK}/debian-cloud.qcow2.xz" | cut -f1) in $((SECONDS - t))s"
fi

# --- publish --------------------------------------------------------------------
chmod 0644 "${WORK}"/vmlinuz "${WORK}"/initrd.img "${WORK}"/debian-cloud.qcow2*
rm -f "${CACHE_DIR}/stamp"
for f in vmlinuz initrd.img debian-cloud.qcow2 debian-cloud.qcow2.xz; do
    if [[ -e ${WORK}/${f} ]]; then
        mv -f "${WORK}/${f}" "${CACHE_DIR}/${f}"
    else
        rm -f "${CACHE_DIR}/${f}"
    fi
done
printf '%s\n' "${CACHE_KEY}" >"${CACHE_DIR}/stamp.tmp"
mv -f "${CACHE_DIR}/stamp.tmp" "${CACHE_DIR}/stamp"

log "kernel ${KVER}, qcow2 $(du -h "${CACHE_DIR}/debian-cloud.qcow2" | cut -f1), took $((SECONDS - START))s"
echo "built: ${CACHE_DIR}"
