#!/usr/bin/env bash
# setup-libvirt.sh - make sure a usable libvirtd is running on this host.
#
# Idempotent: if `virsh -c qemu:///system version` already works, nothing is
# changed.  Otherwise:
#   * with a service manager (systemd) as PID 1: `systemctl start` the units;
#   * without one (containers, CI sandboxes): prepare users/directories and
#     start virtlogd and libvirtd as daemons by hand.
# Finally the qemu:///system and test+unix:///default URIs are verified and
# whether KVM acceleration is usable is reported (without VT-x/SVM guests run
# under QEMU TCG, i.e. <domain type='qemu'>).
#
# Must run as root.
set -euo pipefail

SYSTEM_URI="qemu:///system"
TEST_URI="test+unix:///default"
WAIT_SECONDS="${VIRTOPS_LIBVIRT_WAIT:-30}"

log() { printf 'setup-libvirt: %s\n' "$*"; }
die() { printf 'setup-libvirt: ERROR: %s\n' "$*" >&2; exit 1; }

[[ ${EUID} -eq 0 ]] || die "must be run as root"
command -v virsh >/dev/null || die "virsh not found (install libvirt-clients)"
command -v libvirtd >/dev/null || die "libvirtd not found (install libvirt-daemon-system)"

virsh_ok() { virsh -c "$1" version >/dev/null 2>&1; }

# A daemon counts as running if its pidfile points to a live process of that
# name, or (fallback) pgrep finds an exact process-name match.
daemon_running() {
    local name=$1 pidfile=/run/$1.pid pid
    if [[ -r ${pidfile} ]]; then
        pid=$(<"${pidfile}")
        if [[ -n ${pid} && -r /proc/${pid}/comm && $(<"/proc/${pid}/comm") == "${name}" ]]; then
            return 0
        fi
    fi
    pgrep -x "${name}" >/dev/null 2>&1
}

# /dev/kvm: give it the usual udev permissions (root:kvm 0660).  Without
# udev (containers) it is often root:root 0600.  libvirtd probes QEMU as root
# (which can open it) but checks KVM usability as the qemu user (which cannot);
# the mismatch invalidates the capabilities cache on *every* connection, so
# each `virsh -c qemu:///system ...` re-probes QEMU (~4 s).  Whether KVM
# actually works is a separate question (see the report at the end).
fix_dev_kvm() {
    if [[ ! -e /dev/kvm ]]; then
        log "/dev/kvm absent: guests will use QEMU TCG"
        return 0
    fi
    getent group kvm >/dev/null || return 0
    local cur
    cur=$(stat -c '%G %a' /dev/kvm)
    if [[ ${cur} != "kvm 660" ]]; then
        if chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; then
            log "set /dev/kvm to root:kvm 0660 (was ${cur})"
        else
            log "could not adjust /dev/kvm permissions (ignored)"
        fi
    fi
}

# Ensure the unprivileged qemu user/group exist; if they do not (and cannot be
# created) fall back to running QEMU as root.
ensure_qemu_user() {
    local conf=/etc/libvirt/qemu.conf
    if ! getent group kvm >/dev/null; then
        groupadd --system kvm 2>/dev/null && log "created group kvm" || true
    fi
    if ! getent passwd libvirt-qemu >/dev/null; then
        useradd --system --no-create-home --home-dir /var/lib/libvirt \
            --shell /usr/sbin/nologin --gid kvm libvirt-qemu 2>/dev/null \
            && log "created user libvirt-qemu" || true
    fi
    if ! getent passwd libvirt-qemu >/dev/null || ! getent group kvm >/dev/null; then
        if ! grep -Eq '^[[:space:]]*user[[:space:]]*=' "${conf}"; then
            printf '\n# added by virtops setup-libvirt.sh (no libvirt-qemu user/kvm group)\nuser = "root"\ngroup = "root"\n' >>"${conf}"
            log "configured ${conf}: QEMU runs as root"
        fi
    fi
}

wait_for_libvirt() {
    local i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        virsh_ok "${SYSTEM_URI}" && return 0
        sleep 0.5
    done
    return 1
}

start_without_service_manager() {
    ensure_qemu_user
    mkdir -p /var/log/libvirt /var/lib/libvirt/images /run/libvirt
    if daemon_running virtlogd; then
        log "virtlogd already running"
    else
        virtlogd -d && log "started virtlogd"
    fi
    if daemon_running libvirtd; then
        log "libvirtd already running (but not answering yet)"
    else
        libvirtd -d && log "started libvirtd"
    fi
}

start_with_systemd() {
    systemctl start virtlogd libvirtd
    log "started virtlogd and libvirtd via systemctl"
}

pid1=$(cat /proc/1/comm 2>/dev/null || echo unknown)

fix_dev_kvm

if virsh_ok "${SYSTEM_URI}"; then
    log "libvirt already running (${SYSTEM_URI} answers); nothing to do"
else
    if [[ ${pid1} == systemd ]]; then
        start_with_systemd
    else
        log "PID 1 is '${pid1}' (no service manager): starting daemons by hand"
        start_without_service_manager
    fi
    wait_for_libvirt || die "${SYSTEM_URI} did not answer within ${WAIT_SECONDS}s (see /var/log/libvirt)"
    log "${SYSTEM_URI} is up"
fi

# The test driver is served by the same libvirtd (test+unix:// goes through
# the daemon socket); just verify it.
if virsh -c "${TEST_URI}" list --all >/dev/null 2>&1; then
    log "${TEST_URI} works"
else
    die "${TEST_URI} does not work"
fi

# Report whether KVM acceleration is usable (informational only).  libvirt
# may list KVM whenever /dev/kvm opens, even in sandboxes whose CPU has no
# vmx/svm flag and where KVM guests hang at boot, so check both.
if virsh -c "${SYSTEM_URI}" domcapabilities --virttype kvm --arch x86_64 >/dev/null 2>&1; then
    if grep -qwE 'vmx|svm' /proc/cpuinfo; then
        log "KVM acceleration: available (<domain type='kvm'> usable)"
    else
        log "KVM acceleration: libvirt lists kvm, but the CPU has no vmx/svm flag;" \
            "KVM guests may not boot here - use <domain type='qemu'> (TCG)"
    fi
else
    log "KVM acceleration: NOT available; use <domain type='qemu'> (TCG)"
fi
virsh -c "${SYSTEM_URI}" version | sed -e '/^[[:space:]]*$/d' -e 's/^/setup-libvirt:   /'
