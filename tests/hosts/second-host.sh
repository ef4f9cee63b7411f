#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# second-host.sh - a pair of throw-away libvirt hosts for migration and multi-host tests.
#
#   second-host.sh start  RUN_ID [OWNER_PID]  start hosts "a" and "b" of pair RUN_ID, print their facts
#   second-host.sh stop   RUN_ID     kill everything of the pair, delete its namespaces and files
#   second-host.sh stop   --stale    the same for every pair whose OWNER_PID (default: the
#                                    caller of `start`) has exited - leftovers of killed test runs
#   second-host.sh stop   --all      the same for every pair on this machine (other runs' too!)
#   second-host.sh status RUN_ID     show the pair's daemons, guests and addresses (exit 1 if down)
#   second-host.sh facts  RUN_ID     print the pair's facts (URIs, addresses) again
#
# Each host is its own libvirtd + virtlogd running in
#   * its own network namespace (vo-RUN_ID-a / vo-RUN_ID-b) joined by one veth pair:
#       host a = 169.254.231.1/30, host b = 169.254.231.2/30, lo up, no other route;
#   * its own mount namespace: tmpfs on /run, and /etc/libvirt, /var/lib/libvirt,
#     /var/log/libvirt, /var/cache/libvirt bind-mounted from STATE/<host>/...;
#     the test image directory is bind-mounted read-only at its usual path;
#   * its own UTS namespace (hostname virtops-RUN_ID-<host>) and its own host_uuid.
# The main libvirtd of the machine is never touched, and nothing is configured in the
# root network namespace (so nothing can leave the machine through it).
#
# Clients on the machine reach a host through its UNIX socket, which lives outside the
# private mounts:  qemu+unix:///system?socket=STATE/<host>/sock/libvirt-sock
# Inside the pair's network namespaces each host also answers qemu+tcp://<address>/system
# (auth none, listen_addr restricted to the link-local address).
# Shared storage: /var/lib/virtops-shared-RUN_ID, the same directory at the same path on both.
#
# Must run as root. Everything is named after RUN_ID ([a-z0-9]{1,8}).
set -euo pipefail

STATE_ROOT=${VIRTOPS_HOSTS_STATE:-/var/lib/virtops-hosts}
SHARED_BASE=/var/lib/virtops-shared-
IMAGE_DIR=/var/lib/libvirt/images/virtops-test
HOSTS=(a b)
declare -A ADDR=([a]=169.254.231.1 [b]=169.254.231.2)
WAIT_SECONDS=${VIRTOPS_HOSTS_WAIT:-60}
STARTING=

log() { printf 'second-host: %s\n' "$*" >&2; }
die() { printf 'second-host: ERROR: %s\n' "$*" >&2; exit 1; }

check_run_id() {
    [[ ${1:-} =~ ^[a-z0-9]{1,8}$ ]] || die "RUN_ID must be 1-8 characters [a-z0-9], got '${1:-}'"
}

netns_exists() { [[ -e /run/netns/$1 ]]; }
netns_name() { printf 'vo-%s-%s' "$1" "$2"; }
veth_name() { printf 'vo%s%s' "$1" "$2"; }   # at most 11 characters (IFNAMSIZ is 16)
state_dir() { printf '%s/%s/%s' "${STATE_ROOT}" "$1" "$2"; }
socket_path() { printf '%s/sock/libvirt-sock' "$(state_dir "$1" "$2")"; }
uri_of() { printf 'qemu+unix:///system?socket=%s' "$(socket_path "$1" "$2")"; }

write_configs() {
    local run=$1 host=$2 dir
    dir=$(state_dir "${run}" "${host}")
    mkdir -p "${dir}"/{etc,lib/images,log/qemu,cache,sock}
    chmod 0700 "${dir}/sock"
    cat >"${dir}/etc/libvirtd.conf" <<EOF
# virtops test host ${run}-${host} (tests/hosts/second-host.sh)
listen_tls = 0
listen_tcp = 1
listen_addr = "${ADDR[${host}]}"
auth_tcp = "none"
unix_sock_dir = "${dir}/sock"
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    # QEMU runs as root without a security driver or cgroups: the image directory is
    # bind-mounted read-only (nothing may be relabelled) and cgroup names
    # (machine/qemu-ID-NAME) would clash with the main daemon and the other host.
    cat >"${dir}/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
EOF
    # The hosts of the pair resolve each other by name (libvirt's default migration URI is
    # tcp://<destination hostname>); nothing else resolves inside the namespace.
    {
        printf '127.0.0.1 localhost\n::1 localhost\n'
        local other
        for other in "${HOSTS[@]}"; do
            printf '%s virtops-%s-%s\n' "${ADDR[${other}]}" "${run}" "${other}"
        done
    } >"${dir}/hosts"
    cat >"${dir}/etc/virtlogd.conf" <<EOF
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
EOF
    # A warm QEMU capabilities cache saves a probe of several seconds per host; libvirtd
    # re-validates it and probes again when it does not match.
    if [[ -d /var/cache/libvirt/qemu/capabilities ]]; then
        mkdir -p "${dir}/cache/qemu/capabilities"
        cp -p /var/cache/libvirt/qemu/capabilities/*.xml "${dir}/cache/qemu/capabilities/" 2>/dev/null || true
    fi
}

start_network() {
    local run=$1 nsa nsb
    nsa=$(netns_name "${run}" a)
    nsb=$(netns_name "${run}" b)
    ip netns add "${nsa}"
    ip netns add "${nsb}"
    # Created directly inside the namespaces: the root namespace never holds an end.
    ip link add "$(veth_name "${run}" a)" netns "${nsa}" type veth peer name "$(veth_name "${run}" b)" netns "${nsb}"
    local host ns
    for host in "${HOSTS[@]}"; do
        ns=$(netns_name "${run}" "${host}")
        ip -n "${ns}" link set lo up
        ip -n "${ns}" addr add "${ADDR[${host}]}/30" dev "$(veth_name "${run}" "${host}")"
        ip -n "${ns}" link set "$(veth_name "${run}" "${host}")" up
    done
}

start_daemons() {
    local run=$1 host=$2 dir ns
    dir=$(state_dir "${run}" "${host}")
    ns=$(netns_name "${run}" "${host}")
    mkdir -p "${dir}/lib/images/virtops-test"
    # The mounts below exist only in the new mount namespace; they vanish with its last
    # process (the daemons and their guests), so stopping never has to unmount anything.
    # shellcheck disable=SC2016 # expanded by the inner shell, from its environment
    ip netns exec "${ns}" unshare --mount --uts --propagation private \
        env DIR="${dir}" HOSTNAME_="virtops-${run}-${host}" IMAGE_DIR="${IMAGE_DIR}" sh -euc '
            hostname "$HOSTNAME_"
            mount --bind "$DIR/hosts" /etc/hosts
            mount -t tmpfs -o mode=0755,size=64m tmpfs /run
            mkdir -p /run/libvirt /run/lock
            if [ -d "$IMAGE_DIR" ]; then
                mount --bind -o ro "$IMAGE_DIR" "$DIR/lib/images/virtops-test"
            fi
            mount --rbind "$DIR/lib" /var/lib/libvirt
            mount --bind "$DIR/etc" /etc/libvirt
            mount --bind "$DIR/log" /var/log/libvirt
            mkdir -p /var/cache/libvirt
            mount --bind "$DIR/cache" /var/cache/libvirt
            virtlogd -d -p "$DIR/virtlogd.pid"
            libvirtd -d -l -p "$DIR/libvirtd.pid"
        '
}

wait_ready() {
    local run=$1 host=$2 uri i
    uri=$(uri_of "${run}" "${host}")
    for ((i = 0; i < WAIT_SECONDS * 4; i++)); do
        if virsh -q -c "${uri}" uri >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.25
    done
    return 1
}

cmd_start() {
    local run=$1 owner=${2:-${PPID}} host
    check_run_id "${run}"
    [[ ${owner} =~ ^[0-9]+$ ]] || die "OWNER_PID must be a process id, got '${owner}'"
    [[ ${EUID} -eq 0 ]] || die "must run as root"
    [[ ! -e ${STATE_ROOT}/${run} ]] || die "pair '${run}' exists already (${STATE_ROOT}/${run}); stop it first"
    for host in "${HOSTS[@]}"; do
        ! netns_exists "$(netns_name "${run}" "${host}")" \
            || die "network namespace $(netns_name "${run}" "${host}") exists already"
    done
    mkdir -p "${STATE_ROOT}/${run}"
    # The process the pair belongs to: `stop --stale` removes pairs whose owner is gone.
    printf '%s %s\n' "${owner}" "$(owner_start_time "${owner}")" >"${STATE_ROOT}/${run}/owner"
    # Whatever fails from here on, leave nothing behind.
    STARTING=${run}
    trap 'if [[ -n ${STARTING} ]]; then log "start failed; cleaning up"; cmd_stop "${STARTING}" >/dev/null 2>&1 || true; fi' EXIT
    mkdir -p "${SHARED_BASE}${run}"
    start_network "${run}"
    for host in "${HOSTS[@]}"; do
        write_configs "${run}" "${host}"
        start_daemons "${run}" "${host}"
    done
    for host in "${HOSTS[@]}"; do
        wait_ready "${run}" "${host}" || {
            tail -n 20 "$(state_dir "${run}" "${host}")/log/libvirtd.log" >&2 || true
            die "host ${host} of pair ${run} did not answer within ${WAIT_SECONDS}s"
        }
    done
    STARTING=
    trap - EXIT
    cmd_facts "${run}"
}

cmd_facts() {
    local run=$1 host
    printf 'RUN_ID=%s\nSHARED_DIR=%s%s\n' "${run}" "${SHARED_BASE}" "${run}"
    for host in "${HOSTS[@]}"; do
        printf '%s_NETNS=%s\n' "${host^^}" "$(netns_name "${run}" "${host}")"
        printf '%s_ADDRESS=%s\n' "${host^^}" "${ADDR[${host}]}"
        printf '%s_URI=%s\n' "${host^^}" "$(uri_of "${run}" "${host}")"
        printf '%s_TCP_URI=qemu+tcp://%s/system\n' "${host^^}" "${ADDR[${host}]}"
        printf '%s_STATE=%s\n' "${host^^}" "$(state_dir "${run}" "${host}")"
    done
}

# Send a signal to every process of a network namespace (its daemons and guests).
signal_netns() {
    local ns=$1 sig=$2 pid
    for pid in $(ip netns pids "${ns}" 2>/dev/null); do
        kill "-${sig}" "${pid}" 2>/dev/null || true
    done
}

cmd_stop() {
    local run=$1 host ns i
    check_run_id "${run}"
    [[ ${EUID} -eq 0 ]] || die "must run as root"
    for host in "${HOSTS[@]}"; do
        ns=$(netns_name "${run}" "${host}")
        netns_exists "${ns}" || continue
        signal_netns "${ns}" TERM
    done
    for ((i = 0; i < 40; i++)); do
        local left=0
        for host in "${HOSTS[@]}"; do
            ns=$(netns_name "${run}" "${host}")
            [[ -n $(ip netns pids "${ns}" 2>/dev/null) ]] && left=1
        done
        [[ ${left} -eq 0 ]] && break
        sleep 0.25
    done
    for host in "${HOSTS[@]}"; do
        ns=$(netns_name "${run}" "${host}")
        signal_netns "${ns}" KILL
    done
    for host in "${HOSTS[@]}"; do
        ns=$(netns_name "${run}" "${host}")
        # deleting a namespace also deletes its end of the veth pair (and with it the peer)
        if netns_exists "${ns}"; then ip netns delete "${ns}"; fi
    done
    # The private mounts die with the namespace's last process; only plain files remain.
    if [[ -d ${STATE_ROOT}/${run} ]]; then
        if grep -q " ${STATE_ROOT}/${run}" /proc/self/mounts; then
            die "something is still mounted under ${STATE_ROOT}/${run}; not removing it"
        fi
        rm -rf --one-file-system "${STATE_ROOT:?}/${run}"
    fi
    rm -rf --one-file-system "${SHARED_BASE}${run}"
    rmdir "${STATE_ROOT}" 2>/dev/null || true
    log "pair ${run} stopped and removed"
}

cmd_stop_all() {
    local run
    declare -A runs=()
    for run in $(ip netns list | sed -n 's/^vo-\([a-z0-9]\{1,8\}\)-[ab]\b.*/\1/p'); do runs[${run}]=1; done
    if [[ -d ${STATE_ROOT} ]]; then
        local dir
        for dir in "${STATE_ROOT}"/*/; do
            [[ -d ${dir} ]] && runs[$(basename "${dir}")]=1
        done
    fi
    for run in "${!runs[@]}"; do
        [[ ${run} =~ ^[a-z0-9]{1,8}$ ]] && cmd_stop "${run}"
    done
    return 0
}

# Start time of a process (field 22 of /proc/PID/stat), so a recycled PID is not mistaken
# for the owner.
owner_start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return 0; }
    stat=${stat##*) }
    awk '{print $20}' <<<"${stat}"
}

cmd_stop_stale() {
    local dir run pid start
    [[ -d ${STATE_ROOT} ]] || return 0
    for dir in "${STATE_ROOT}"/*/; do
        run=$(basename "${dir}")
        [[ ${run} =~ ^[a-z0-9]{1,8}$ ]] || continue
        if [[ -r ${dir}owner ]]; then
            read -r pid start <"${dir}owner" || true
            if [[ -n ${pid:-} && -d /proc/${pid} && $(owner_start_time "${pid}") == "${start:-}" ]]; then
                continue   # its owner still runs
            fi
        elif [[ -n $(find "${dir}" -maxdepth 0 -mmin -2) ]]; then
            continue       # being started right now (the owner file comes next)
        fi
        log "pair ${run}: owner gone, removing it"
        cmd_stop "${run}"
    done
}

cmd_status() {
    local run=$1 host ns uri rc=0
    check_run_id "${run}"
    for host in "${HOSTS[@]}"; do
        ns=$(netns_name "${run}" "${host}")
        uri=$(uri_of "${run}" "${host}")
        if ! netns_exists "${ns}"; then
            printf 'host %s: network namespace %s missing\n' "${host}" "${ns}"
            rc=1
            continue
        fi
        printf 'host %s: netns %s, %s, processes: %s\n' "${host}" "${ns}" \
            "$(ip -n "${ns}" -br addr show | awk '$1 !~ /^lo/ {print $1, $3}')" "$(ip netns pids "${ns}" | xargs)"
        if virsh -q -c "${uri}" uri >/dev/null 2>&1; then
            printf '  %s answers; guests:\n' "${uri}"
            virsh -q -c "${uri}" list --all | sed 's/^/    /'
        else
            printf '  %s does NOT answer\n' "${uri}"
            rc=1
        fi
    done
    return ${rc}
}

case ${1:-} in
    start) cmd_start "${2:-}" "${3:-}" ;;
    stop)
        case ${2:-} in
            --all) cmd_stop_all ;;
            --stale) cmd_stop_stale ;;
            *) cmd_stop "${2:-}" ;;
        esac ;;
    status) cmd_status "${2:-}" ;;
    facts) check_run_id "${2:-}"; cmd_facts "$2" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
