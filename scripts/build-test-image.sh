#!/usr/bin/env bash
# build-test-image.sh [CACHE_DIR]
#
# Build (and cache) a tiny bootable test guest for libvirt direct kernel boot:
#
#   CACHE_DIR/vmlinuz     Debian cloud kernel (linux-image-*-cloud-amd64)
#   CACHE_DIR/initrd.img  gzip'd newc initramfs: busybox-static, the host's
#                         qemu-ga (+ its libraries), virtio/ACPI modules and an
#                         /init that starts the guest agent and prints
#                         VIRTOPS-TEST-READY on the serial console
#   CACHE_DIR/stamp       cache key (package versions + hash of this script)
#
# Default CACHE_DIR: ${XDG_CACHE_HOME:-$HOME/.cache}/virtops-libvirt/image
#
# Nothing is installed on the host: the kernel .deb is fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into a temp dir.
# Host requirements: apt, dpkg, kmod (depmod), cpio, gzip, busybox-static,
# qemu-guest-agent (the guest runs the host's /usr/sbin/qemu-ga binary).
#
# See tests/image/README.md for what the guest provides.
set -euo pipefail

export PATH="${PATH}:/usr/local/sbin:/usr/sbin:/sbin"
export LC_ALL=C

CACHE_DIR="${1:-${XDG_CACHE_HOME:-${HOME}/.cache}/virtops-libvirt/image}"
KERNEL_META_PKG="linux-image-cloud-amd64"
BUSYBOX=/bin/busybox
QEMU_GA=/usr/sbin/qemu-ga

# Kernel modules wanted in the guest (module names; '-' and '_' are
# equivalent).  Built-in ones (see modules.builtin) are skipped, dependencies
# are pulled in from modules.dep.  ext4, jbd2, mbcache, crc16 and crc32c are
# built into the Debian cloud kernel, so they usually end up skipped.
WANTED_MODULES=(
    virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
    virtio_console
    virtio_blk
    scsi_mod sd_mod virtio_scsi
    failover net_failover virtio_net
    virtio_balloon
    virtio_rng
    ext4 jbd2 mbcache crc16 crc32c_generic
    button evdev   # ACPI power button -> /dev/input/event* -> busybox acpid
)

log() { printf 'build-test-image: %s\n' "$*" >&2; }
die() { printf 'build-test-image: ERROR: %s\n' "$*" >&2; exit 1; }

for tool in apt-get apt-cache dpkg-deb dpkg-query depmod cpio gzip ldd flock sha256sum; do
    command -v "${tool}" >/dev/null || die "required tool '${tool}' not found"
done
[[ -x ${BUSYBOX} ]] || die "${BUSYBOX} missing (apt-get install busybox-static)"
[[ -x ${QEMU_GA} ]] || die "${QEMU_GA} missing (apt-get install qemu-guest-agent)"

pkg_version() { # installed version of a host package
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || die "package $1 is not installed"
}

# --- cache key --------------------------------------------------------------
# The real, versioned kernel package behind the meta package, e.g.
# linux-image-6.1.0-56-cloud-amd64, read from the meta package's Depends
# (what `apt-cache depends` shows).  One apt-cache call: without a persistent
# pkgcache.bin (Debian container images) each call costs ~0.5-1 s.
META_DEPENDS=$(apt-cache show --no-all-versions "${KERNEL_META_PKG}" 2>/dev/null \
    | sed -n 's/^Depends: //p' | head -n1 | tr ',' '\n')
KERNEL_PKG=$(sed -n 's/^ *\(linux-image-[0-9][^ ]*-cloud-amd64\).*/\1/p' <<<"${META_DEPENDS}" | head -n1)
[[ -n ${KERNEL_PKG} ]] || die "cannot resolve ${KERNEL_META_PKG} via apt-cache (run apt-get update?)"
# Normally pinned as "(= VERSION)"; otherwise ask for the candidate version.
KERNEL_PKG_VERSION=$(sed -n "s/^ *${KERNEL_PKG} (= \([^)]*\)).*/\1/p" <<<"${META_DEPENDS}" | head -n1)
if [[ -z ${KERNEL_PKG_VERSION} ]]; then
    KERNEL_PKG_VERSION=$(apt-cache show --no-all-versions "${KERNEL_PKG}" | awk '/^Version:/ { print $2; exit }')
fi
[[ -n ${KERNEL_PKG_VERSION} ]] || die "no candidate version for ${KERNEL_PKG}"

SCRIPT_HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
CACHE_KEY=$(printf '%s\n' \
    "kernel=${KERNEL_PKG} ${KERNEL_PKG_VERSION}" \
    "busybox-static=$(pkg_version busybox-static)" \
    "qemu-guest-agent=$(pkg_version qemu-guest-agent)" \
    "builder=${SCRIPT_HASH}")

mkdir -p "${CACHE_DIR}"
# Serialise concurrent builds into the same cache dir.
exec 9>"${CACHE_DIR}/.lock"
flock 9

cache_valid() {
    [[ -s ${CACHE_DIR}/vmlinuz && -s ${CACHE_DIR}/initrd.img && -f ${CACHE_DIR}/stamp ]] \
        && [[ $(<"${CACHE_DIR}/stamp") == "${CACHE_KEY}" ]]
}
if cache_valid; then
    echo "cached: ${CACHE_DIR}"
    exit 0
fi

START=${SECONDS}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/virtops-image.XXXXXX")
trap 'rm -rf "${WORK}"' EXIT
KROOT=${WORK}/kernel   # unpacked kernel package
STAGE=${WORK}/root     # initramfs contents

# --- kernel -----------------------------------------------------------------
log "downloading ${KERNEL_PKG} ${KERNEL_PKG_VERSION}"
# Sandbox user root: the temp dir is not accessible to _apt.
(cd "${WORK}" && apt-get -q download -o APT::Sandbox::User=root \
    "${KERNEL_PKG}=${KERNEL_PKG_VERSION}" >&2)
dpkg-deb -x "${WORK}"/"${KERNEL_PKG}"_*.deb "${KROOT}"
KVER=$(basename "$(find "${KROOT}/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
[[ -n ${KVER} && -f ${KROOT}/boot/vmlinuz-${KVER} ]] || die "unexpected kernel package layout"
KMOD=${KROOT}/lib/modules/${KVER}
# The .deb ships no modules.dep (postinst runs depmod); generate it.
depmod -b "${KROOT}" "${KVER}"
log "kernel release ${KVER}"

# --- initramfs skeleton -----------------------------------------------------
mkdir -p "${STAGE}"/{bin,sbin,usr/bin,usr/sbin,usr/lib,usr/lib64,etc,proc,sys,dev,run,tmp,data,root,home/tester,var}
ln -s usr/lib "${STAGE}/lib"
ln -s usr/lib64 "${STAGE}/lib64"
ln -s ../run "${STAGE}/var/run"
ln -s ../tmp "${STAGE}/var/tmp"
chmod 1777 "${STAGE}/tmp"
chmod 0700 "${STAGE}/root"
# /dev/console lets the kernel open stdio for /init (needs root; /init
# re-opens the console from devtmpfs anyway).
mknod -m 600 "${STAGE}/dev/console" c 5 1 2>/dev/null || true

# busybox + applet symlinks.  `busybox --install -s` would write into the
# host's /bin; --list-full gives the same paths relative to a root instead.
cp "${BUSYBOX}" "${STAGE}/bin/busybox"
while read -r applet; do
    [[ -e ${STAGE}/${applet} || -L ${STAGE}/${applet} ]] && continue
    ln -s /bin/busybox "${STAGE}/${applet}"
done < <("${BUSYBOX}" --list-full)

# Copy a host file to the same path inside the initramfs (dereferencing
# symlinks; /lib and /lib64 are symlinks into usr/ there, as on the host).
copy_host_file() {
    local src=$1 dst
    dst=${STAGE}${src}
    mkdir -p "$(dirname "${dst}")"
    cp -L "${src}" "${dst}"
}

# qemu-ga and every library it links against (plus the dynamic loader).
copy_host_file "${QEMU_GA}"
while read -r lib; do
    copy_host_file "${lib}"
done < <(ldd "${QEMU_GA}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)

# --- kernel modules -----------------------------------------------------------
norm() { echo "${1//-/_}"; }
declare -A MOD_PATH=() MOD_DEPS=() BUILTIN=() SEEN=()
while IFS= read -r line; do
    path=${line%%:*}
    name=$(basename "${path}"); name=${name%%.ko*}
    name=$(norm "${name}")
    MOD_PATH[${name}]=${path}
    MOD_DEPS[${name}]=${line#*:}
done <"${KMOD}/modules.dep"
while IFS= read -r path; do
    name=$(basename "${path}"); name=$(norm "${name%%.ko*}")
    BUILTIN[${name}]=1
done <"${KMOD}/modules.builtin"

ORDER=()  # module paths (relative to lib/modules/KVER), dependencies first
visit() { # depth-first topological sort over modules.dep
    local name dep
    name=$(norm "$1")
    [[ -n ${SEEN[${name}]:-} ]] && return 0
    SEEN[${name}]=1
    for dep in ${MOD_DEPS[${name}]}; do
        dep=$(basename "${dep}")
        visit "${dep%%.ko*}"
    done
    ORDER+=("${MOD_PATH[${name}]}")
}
SKIPPED_BUILTIN=()
for mod in "${WANTED_MODULES[@]}"; do
    m=$(norm "${mod}")
    if [[ -n ${BUILTIN[${m}]:-} ]]; then
        SKIPPED_BUILTIN+=("${m}")
    elif [[ -n ${MOD_PATH[${m}]:-} ]]; then
        visit "${m}"
    else
        die "kernel module ${m} is neither built-in nor a module in ${KVER}"
    fi
done
log "built-in (skipped): ${SKIPPED_BUILTIN[*]:-none}"

GMOD=${STAGE}/lib/modules/${KVER}
mkdir -p "${GMOD}" "${STAGE}/etc/virtops"
: >"${STAGE}/etc/virtops/modules"
for path in "${ORDER[@]}"; do
    src=${KMOD}/${path}
    dst=${GMOD}/${path%.xz}; dst=${dst%.zst}; dst=${dst%.gz}  # busybox insmod wants plain .ko
    mkdir -p "$(dirname "${dst}")"
    case ${path} in
        *.ko.xz) xz -dc "${src}" >"${dst}" ;;
        *.ko.zst) zstd -qdc "${src}" >"${dst}" ;;
        *.ko.gz) gzip -dc "${src}" >"${dst}" ;;
        *) cp "${src}" "${dst}" ;;
    esac
    echo "${dst#"${GMOD}"/}" >>"${STAGE}/etc/virtops/modules"
done
log "modules (load order): $(tr '\n' ' ' <"${STAGE}/etc/virtops/modules" | sed 's#[^ ]*/##g')"
# modules.dep/alias for just the shipped subset, so busybox modprobe (and
# kernel-triggered request_module) work inside the guest too.
cp "${KMOD}/modules.builtin" "${KMOD}/modules.order" "${GMOD}/"
[[ -f ${KMOD}/modules.builtin.modinfo ]] && cp "${KMOD}/modules.builtin.modinfo" "${GMOD}/"
depmod -b "${STAGE}" "${KVER}"

# --- guest configuration / scripts --------------------------------------------
# /init: PID 1 from the initramfs.  Sets up the system, then execs busybox
# init which supervises qemu-ga, acpid and the serial console shell.
cat >"${STAGE}/init" <<'EOF'
#!/bin/sh
# virtops test image: early init (PID 1).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
dmesg -n 1   # keep kernel messages off the serial console from now on

# Kernel modules, dependencies first (order computed from modules.dep).
kver=$(uname -r)
while read -r m; do
    insmod "/lib/modules/$kver/$m" || echo "virtops-init: insmod $m failed"
done </etc/virtops/modules

hostname virtops-test
echo virtops-test >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvirtops-test\n' >/etc/hosts

# Users: root and tester (tests set tester's password via the agent and
# read /etc/shadow back).  '*' = no password login possible.
cat >/etc/passwd <<'EOT'
root:x:0:0:root:/root:/bin/sh
tester:x:1000:1000:tester:/home/tester:/bin/sh
EOT
cat >/etc/group <<'EOT'
root:x:0:
tester:x:1000:
EOT
cat >/etc/shadow <<'EOT'
root:*:19000:0:99999:7:::
tester:!:19000:0:99999:7:::
EOT
chmod 0644 /etc/passwd /etc/group
chmod 0600 /etc/shadow
chown 1000:1000 /home/tester

# /dev/vda with ext4 -> /data (read-write), so guest-fsfreeze has a real fs.
if [ -d /sys/block/vda ]; then
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
    # busybox-static has no blkid: check the ext2/3/4 superblock magic
    # (0xEF53, little endian, at byte 1080).
    if [ "$(dd if=/dev/vda bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 53ef ]; then
        mount -t ext4 -o rw /dev/vda /data || echo "virtops-init: mounting /dev/vda failed"
    fi
fi

# Networking: loopback, plus a static QEMU user-net address on eth0 if a NIC
# exists.  No DHCP, no default route, IPv6 off: the guest sends no traffic.
ip link set lo up
if [ -d /sys/class/net/eth0 ]; then
    echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
    echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null
    echo 1 >/proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
fi

exec /sbin/init
EOF

# busybox init: supervise the agent, acpid and a root shell on ttyS0.
cat >"${STAGE}/etc/inittab" <<'EOF'
# virtops test image (busybox init)
::respawn:/sbin/virtops-qemu-ga
::respawn:/sbin/acpid -f -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid
ttyS0::respawn:/sbin/virtops-console
::ctrlaltdel:/sbin/poweroff
::shutdown:/etc/virtops/shutdown
EOF

# Guest agent supervisor (respawned by init when it exits).
cat >"${STAGE}/sbin/virtops-qemu-ga" <<'EOF'
#!/bin/sh
# Find the virtio-serial port named org.qemu.guest_agent.0 (no udev: scan
# sysfs; the /dev node comes from devtmpfs), run qemu-ga on it and print the
# ready marker on the console once per boot.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ready() {
    [ -e /run/virtops-ready ] && return 0
    : >/run/virtops-ready
    echo "VIRTOPS-TEST-READY" >/dev/console
}
port=
i=0
while [ -z "$port" ] && [ $i -lt 30 ]; do   # poll up to ~3 s
    for f in /sys/class/virtio-ports/*/name; do
        [ -r "$f" ] || continue
        if [ "$(cat "$f")" = org.qemu.guest_agent.0 ]; then
            port=${f%/name}; port=/dev/${port##*/}
            break
        fi
    done
    [ -n "$port" ] || { sleep 0.1; i=$((i + 1)); }
done
if [ -z "$port" ]; then
    ready                 # no agent channel configured: still announce
    sleep 10              # init respawns us -> re-scan (hot-plugged channel)
    exit 0
fi
i=0
while [ ! -c "$port" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
# Foreground qemu-ga (as our child, so we notice when it exits).  qemu-ga
# only writes its -f pidfile when daemonized (-d), so write it ourselves.
qemu-ga -m virtio-serial -p "$port" -t /run -f /run/qemu-ga.pid -l /run/qemu-ga.log &
pid=$!
echo $pid >/run/qemu-ga.pid
# Ready once qemu-ga has the port open (poll up to ~10 s).
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 200 ]; do
    for fd in /proc/"$pid"/fd/*; do
        if [ "$(readlink "$fd")" = "$port" ]; then ready; break 2; fi
    done
    sleep 0.05; i=$((i + 1))
done
wait $pid
rc=$?
rm -f /run/qemu-ga.pid
echo "virtops: qemu-ga exited (status $rc), restarting" >/dev/console
sleep 1
EOF

# Root shell on the serial console.  Waits (bounded) for the ready marker so
# that VIRTOPS-TEST-READY is not interleaved with the shell prompt.
cat >"${STAGE}/sbin/virtops-console" <<'EOF'
#!/bin/sh
i=0
while [ ! -e /run/virtops-ready ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
cd /root || cd /
exec /bin/sh -l
EOF

# qemu-ga's guest-shutdown execs `/sbin/shutdown -P|-H|-r +0 "msg"`.
# busybox has no shutdown applet; map it to poweroff/halt/reboot, which
# signal busybox init for an orderly shutdown.
cat >"${STAGE}/sbin/shutdown" <<'EOF'
#!/bin/sh
action=poweroff
for arg in "$@"; do
    case $arg in
        -r | --reboot) action=reboot ;;
        -H | --halt) action=halt ;;
        -P | -h | --poweroff) action=poweroff ;;
    esac
done
exec /sbin/$action
EOF

# qemu-ga's guest-set-user-password pipes "user:password" into `chpasswd`
# (or `chpasswd -e` for a pre-hashed password), found via PATH.  Debian's
# busybox-static lacks chpasswd, so provide a minimal one.
cat >"${STAGE}/usr/sbin/chpasswd" <<'EOF'
#!/bin/sh
# Minimal chpasswd: reads user:password lines on stdin; -e = already hashed.
encrypted=0
case ${1:-} in -e | --encrypted) encrypted=1 ;; esac
rc=0
while IFS= read -r line || [ -n "$line" ]; do
    user=${line%%:*}
    pass=${line#*:}
    if [ $encrypted = 1 ]; then
        hash=$pass
    else
        hash=$(printf '%s' "$pass" | mkpasswd -m sha512) || { rc=1; continue; }
    fi
    tmp=/etc/shadow.$$
    if U=$user H=$hash awk -F: -v OFS=: \
        '$1 == ENVIRON["U"] { $2 = ENVIRON["H"]; found = 1 } { print } END { exit !found }' \
        /etc/shadow >"$tmp"; then
        chmod 0600 "$tmp" && mv "$tmp" /etc/shadow
    else
        rm -f "$tmp"
        echo "chpasswd: unknown user $user" >&2
        rc=1
    fi
done
exit $rc
EOF

# ACPI power button (virsh shutdown): busybox acpid maps the KEY_POWER evdev
# event to the action /etc/acpi/PWRF/00000080.
mkdir -p "${STAGE}/etc/acpi/PWRF"
cat >"${STAGE}/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
# orderly shutdown via busybox init (runs /etc/virtops/shutdown, then powers off)
exec /sbin/poweroff
EOF

# Run by busybox init before it kills everything and powers off.
cat >"${STAGE}/etc/virtops/shutdown" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
if grep -q ' /data ' /proc/mounts; then
    fsfreeze --unfreeze /data 2>/dev/null
    sync
    umount /data 2>/dev/null || mount -o remount,ro /data
fi
sync
echo "virtops: powering off" >/dev/console
EOF

chmod 0755 "${STAGE}/init" "${STAGE}/sbin/virtops-qemu-ga" "${STAGE}/sbin/virtops-console" "${STAGE}/sbin/shutdown" \
    "${STAGE}/usr/sbin/chpasswd" "${STAGE}/etc/acpi/PWRF/00000080" "${STAGE}/etc/virtops/shutdown"

# Sanity check: the agent must be runnable with only the copied libraries.
if [[ ${EUID} -eq 0 ]]; then
    chroot "${STAGE}" /usr/sbin/qemu-ga --version >/dev/null \
        || die "qemu-ga does not run inside the staged root (missing library?)"
fi

# --- pack + publish -------------------------------------------------------------
# Fixed timestamps + sorted names + gzip -n => identical inputs give an
# identical initrd.img (install-test-image.sh then has nothing to copy).
find "${STAGE}" -mindepth 1 -exec touch -h -d @0 {} +
(cd "${STAGE}" && find . -mindepth 1 -print0 | sort -z \
    | cpio --null -o -H newc -R 0:0 --reproducible --quiet | gzip -6 -n) >"${WORK}/initrd.img"
cp "${KROOT}/boot/vmlinuz-${KVER}" "${WORK}/vmlinuz"
chmod 0644 "${WORK}/initrd.img" "${WORK}/vmlinuz"
rm -f "${CACHE_DIR}/stamp"
mv -f "${WORK}/vmlinuz" "${CACHE_DIR}/vmlinuz"
mv -f "${WORK}/initrd.img" "${CACHE_DIR}/initrd.img"
printf '%s\n' "${CACHE_KEY}" >"${CACHE_DIR}/stamp.tmp"
mv -f "${CACHE_DIR}/stamp.tmp" "${CACHE_DIR}/stamp"

log "kernel ${KVER}, initrd $(du -h "${CACHE_DIR}/initrd.img" | cut -f1), took $((SECONDS - START))s"
echo "built: ${CACHE_DIR}"
