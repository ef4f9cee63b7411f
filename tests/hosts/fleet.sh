#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# fleet.sh - N throw-away libvirt hypervisors reachable over real SSH, for fleet tests.
#
#   fleet.sh start  RUN_ID N [OWNER_PID]  start hosts h1..hN of fleet RUN_ID, print their facts
#   fleet.sh stop   RUN_ID     kill everything of the fleet, delete its namespaces and files
#   fleet.sh stop   --stale    the same for every fleet whose OWNER_PID (default: the caller of
#                              `start`) has exited - leftovers of killed test runs
#   fleet.sh stop   --all      the same for every fleet on this machine (other runs' too!)
#   fleet.sh status RUN_ID     show the fleet's daemons, guests and addresses (exit 1 if down)
#   fleet.sh facts  RUN_ID     print the fleet's facts (addresses, URIs, key, inventory) again
#
# Each host hI is a libvirtd + virtlogd + sshd running in
#   * its own network namespace vf-RUN-hI: lo, and one veth end 169.254.K.I/24 ("vf<RUN>h<I>");
#   * its own mount namespace (tmpfs /run; /etc/libvirt, /var/lib/libvirt, /var/log/libvirt,
#     /var/cache/libvirt bind-mounted from STATE/hI/...; the test image directory read-only;
#     /run/libvirt/libvirt-sock points at the daemon's socket, so qemu:///system works there);
#   * its own UTS namespace (hostname virtops-RUN-hI) and its own host_uuid.
# The other veth ends are ports of one bridge in a "switch" namespace vf-RUN-sw (no address).
# The controller (the root namespace) holds one more port of that bridge: vf<RUN>c with
# 169.254.K.254/24. That connected /24 is the only route added anywhere; no namespace has a
# default route, and the switch namespace has no address, so nothing can leave the machine.
# K (a free subnet in 169.254.160-199) is picked per fleet, so fleets can run at the same time.
#
# SSH: each sshd has its own host keys, listens on its host's address only, and accepts the
# fleet's client key (STATE/ssh/id_ed25519) for root. STATE/ssh/known_hosts holds the host keys,
# STATE/ssh/config an ssh_config for the controller, and /etc/ssh/ssh_config.d/virtops-fleet-RUN.conf
# makes the controller's ssh (also the one libvirt runs for qemu+ssh:// URIs) use that key and
# known_hosts file for 169.254.K.* (removed by `stop`). Remote libvirt access over SSH runs
# virt-ssh-helper on the host, which connects to qemu:///system there.
#
# TLS: when certtool (gnutls-bin) is there, a per-fleet CA (STATE/pki, expires in 2 days) signs
# a server certificate per host (its address and hostname) and one client certificate; each
# libvirtd then also listens for qemu+tls:// on its host's address only (port 16514, client
# certificates required), and the facts give TLS_URI=qemu+tls://ADDRESS/system?pkipath=STATE/pki.
# qemu+tcp:// (port 16509, no authentication) listens on the same address only.
#
# Must run as root. Everything is named after RUN_ID ([a-z0-9]{1,8}); N is 1-16.
set -euo pipefail

STATE_ROOT=${VIRTOPS_FLEET_STATE:-/var/lib/virtops-fleets}
SSH_CONF_DIR=${VIRTOPS_FLEET_SSH_CONF_DIR:-/etc/ssh/ssh_config.d}
IMAGE_DIR=/var/lib/libvirt/images/virtops-test
SUBNETS=$(seq 160 199)
LOCK_FILE=${VIRTOPS_FLEET_LOCK:-/run/lock/virtops-fleets.lock}   # serialises the choice of subnets
WAIT_SECONDS=${VIRTOPS_HOSTS_WAIT:-60}
STARTING=

log() { printf 'fleet: %s\n' "$*" >&2; }
die() { printf 'fleet: ERROR: %s\n' "$*" >&2; exit 1; }

check_run_id() {
    [[ ${1:-} =~ ^[a-z0-9]{1,8}$ ]] || die "RUN_ID must be 1-8 characters [a-z0-9], got '${1:-}'"
}

netns_exists() { [[ -e /run/netns/$1 ]]; }
netns_name() { printf 'vf-%s-%s' "$1" "$2"; }        # host hI or the switch "sw"
host_veth() { printf 'vf%s%s' "$1" "$2"; }           # at most 13 characters (IFNAMSIZ is 16)
ctl_veth() { printf 'vf%sc' "$1"; }
fleet_dir() { printf '%s/%s' "${STATE_ROOT}" "$1"; }
state_dir() { printf '%s/%s/%s' "${STATE_ROOT}" "$1" "$2"; }
socket_path() { printf '%s/sock/libvirt-sock' "$(state_dir "$1" "$2")"; }
uri_of() { printf 'qemu+unix:///system?socket=%s' "$(socket_path "$1" "$2")"; }
ssh_conf_file() { printf '%s/virtops-fleet-%s.conf' "${SSH_CONF_DIR}" "$1"; }
hosts_of() { cat "$(fleet_dir "$1")/hosts"; }
subnet_of() { cat "$(fleet_dir "$1")/subnet"; }

# A /24 of 169.254.160-199 that no route of the root namespace and no other fleet uses.
# Called under the state root's lock.
pick_subnet() {
    local k used
    used=$(cat "${STATE_ROOT}"/*/subnet 2>/dev/null || true)
    for k in ${SUBNETS}; do
        grep -qx "${k}" <<<"${used}" && continue
        ip -4 route show table all | grep -q "169\.254\.${k}\." && continue
        ip -4 addr show | grep -q "169\.254\.${k}\." && continue
        printf '%s' "${k}"
        return 0
    done
    return 1
}

write_configs() {
    local run=$1 host=$2 k=$3 index=$4 dir fleet
    dir=$(state_dir "${run}" "${host}")
    fleet=$(fleet_dir "${run}")
    mkdir -p "${dir}"/{etc,lib/images,log/qemu,cache,sock,ssh}
    chmod 0700 "${dir}/sock" "${dir}/ssh"
    local tls=0 pki
    pki="${fleet}/pki/${host}"
    [[ -f ${pki}/servercert.pem ]] && tls=1
    cat >"${dir}/etc/libvirtd.conf" <<EOF
# virtops fleet host ${run}-${host} (tests/hosts/fleet.sh)
listen_tls = ${tls}
key_file = "${pki}/serverkey.pem"
cert_file = "${pki}/servercert.pem"
ca_file = "${fleet}/pki/cacert.pem"
listen_tcp = 1
listen_addr = "169.254.${k}.${index}"
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
    # As second-host.sh: QEMU as root, no security driver, no cgroups (read-only image
    # directory; cgroup names would clash with the main daemon and the other hosts).
    cat >"${dir}/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
EOF
    cat >"${dir}/etc/virtlogd.conf" <<EOF
log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
EOF
    cp "${fleet}/etc-hosts" "${dir}/hosts"
    ssh-keygen -q -t ed25519 -N '' -C "virtops-${run}-${host}" -f "${dir}/ssh/ssh_host_ed25519_key"
    cat >"${dir}/ssh/sshd_config" <<EOF
# virtops fleet host ${run}-${host}: root with the fleet's key only, on the host's address only
ListenAddress 169.254.${k}.${index}:22
HostKey ${dir}/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile ${fleet}/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
PrintMotd no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
EOF
    # A warm QEMU capabilities cache saves a probe of several seconds per host.
    if [[ -d /var/cache/libvirt/qemu/capabilities ]]; then
        mkdir -p "${dir}/cache/qemu/capabilities"
        cp -p /var/cache/libvirt/qemu/capabilities/*.xml "${dir}/cache/qemu/capabilities/" 2>/dev/null || true
    fi
}

start_network() {
    local run=$1 k=$2 sw host index=0 ns
    sw=$(netns_name "${run}" sw)
    ip netns add "${sw}"
    ip -n "${sw}" link set lo up
    ip -n "${sw}" link add br0 type bridge
    ip -n "${sw}" link set br0 up
    # the controller's port: one end in the root namespace, the other on the bridge
    ip link add "$(ctl_veth "${run}")" type veth peer name ctl netns "${sw}"
    ip -n "${sw}" link set ctl master br0 up
    sysctl -qw "net.ipv6.conf.$(ctl_veth "${run}").disable_ipv6=1" || true
    ip addr add "169.254.${k}.254/24" dev "$(ctl_veth "${run}")"
    ip link set "$(ctl_veth "${run}")" up
    for host in $(hosts_of "${run}"); do
        index=$((index + 1))
        ns=$(netns_name "${run}" "${host}")
        ip netns add "${ns}"
        # created directly inside the namespaces: the root namespace never holds these ends
        ip link add "$(host_veth "${run}" "${host}")" netns "${ns}" type veth peer name "${host}" netns "${sw}"
        ip -n "${sw}" link set "${host}" master br0 up
        ip -n "${ns}" link set lo up
        ip -n "${ns}" addr add "169.254.${k}.${index}/24" dev "$(host_veth "${run}" "${host}")"
        ip -n "${ns}" link set "$(host_veth "${run}" "${host}")" up
    done
}

start_daemons() {
    local run=$1 host=$2 dir ns
    dir=$(state_dir "${run}" "${host}")
    ns=$(netns_name "${run}" "${host}")
    mkdir -p "${dir}/lib/images/virtops-test"
    # The mounts exist only in the new mount namespace and vanish with its last process. The
    # pid files are the usual /run/<daemon>.pid of that namespace (the kvm_host role reads them).
    # shellcheck disable=SC2016 # expanded by the inner shell, from its environment
    ip netns exec "${ns}" unshare --mount --uts --propagation private \
        env DIR="${dir}" HOSTNAME_="virtops-${run}-${host}" IMAGE_DIR="${IMAGE_DIR}" sh -euc '
            hostname "$HOSTNAME_"
            mount --bind "$DIR/hosts" /etc/hosts
            mount -t tmpfs -o mode=0755,size=64m tmpfs /run
            mkdir -p /run/libvirt /run/lock /run/sshd
            ln -s "$DIR/sock/libvirt-sock" /run/libvirt/libvirt-sock
            ln -s "$DIR/sock/libvirt-sock-ro" /run/libvirt/libvirt-sock-ro
            if [ -d "$IMAGE_DIR" ]; then
                mount --bind -o ro "$IMAGE_DIR" "$DIR/lib/images/virtops-test"
            fi
            mount --rbind "$DIR/lib" /var/lib/libvirt
            mount --bind "$DIR/etc" /etc/libvirt
            mount --bind "$DIR/log" /var/log/libvirt
            mkdir -p /var/cache/libvirt
            mount --bind "$DIR/cache" /var/cache/libvirt
            virtlogd -d -p /run/virtlogd.pid
            libvirtd -d -l -p /run/libvirtd.pid
            /usr/sbin/sshd -f "$DIR/ssh/sshd_config" -E /var/log/libvirt/sshd.log
        '
}

wait_ready() {
    local run=$1 host=$2 address=$3 uri i
    uri=$(uri_of "${run}" "${host}")
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
        if virsh -q -c "${uri}" uri >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    ((i < WAIT_SECONDS * 10)) || { log "libvirtd of ${host} does not answer"; return 1; }
    # the real path a client takes: ssh with the fleet's key and known_hosts, to the host's sshd
    ssh -F "$(fleet_dir "${run}")/ssh/config" -o ControlMaster=no "${address}" true \
        || { log "sshd of ${host} does not answer"; return 1; }
}

write_fleet_ssh() {
    local run=$1 k=$2 fleet
    fleet=$(fleet_dir "${run}")
    mkdir -p "${fleet}/ssh" "${fleet}/cp"
    chmod 0700 "${fleet}/ssh" "${fleet}/cp"
    ssh-keygen -q -t ed25519 -N '' -C "virtops-fleet-${run}-controller" -f "${fleet}/ssh/id_ed25519"
    cp "${fleet}/ssh/id_ed25519.pub" "${fleet}/ssh/authorized_keys"
    chmod 0600 "${fleet}/ssh/authorized_keys"
    # What the controller's ssh needs for this fleet: the key, the hosts' keys, no prompts.
    cat >"${fleet}/ssh/config" <<EOF
# virtops fleet ${run} (tests/hosts/fleet.sh): the controller's ssh to hosts 169.254.${k}.*
Host 169.254.${k}.*
    User root
    IdentityFile ${fleet}/ssh/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile ${fleet}/ssh/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 10
    ControlMaster auto
    ControlPath ${fleet}/cp/%C
    ControlPersist 120
EOF
}

# A CA for the fleet, a client certificate for the controller and a server certificate per
# host (RSA: libvirt wants key encipherment). Without certtool the fleet has no TLS.
write_fleet_tls() {
    local run=$1 k=$2 count=$3 pki index host
    command -v certtool >/dev/null || { log "no certtool: no qemu+tls:// (apt-get install gnutls-bin)"; return 0; }
    pki="$(fleet_dir "${run}")/pki"
    mkdir -p "${pki}"
    chmod 0700 "${pki}"
    certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "${pki}/cakey.pem" 2>/dev/null
    printf 'cn = virtops fleet %s CA\nca\ncert_signing_key\nexpiration_days = 2\n' "${run}" >"${pki}/ca.info"
    certtool --generate-self-signed --load-privkey "${pki}/cakey.pem" --template "${pki}/ca.info" \
        --outfile "${pki}/cacert.pem" 2>/dev/null
    certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "${pki}/clientkey.pem" 2>/dev/null
    printf 'cn = virtops fleet %s controller\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 2\n' \
        "${run}" >"${pki}/client.info"
    certtool --generate-certificate --load-privkey "${pki}/clientkey.pem" --load-ca-certificate "${pki}/cacert.pem" \
        --load-ca-privkey "${pki}/cakey.pem" --template "${pki}/client.info" --outfile "${pki}/clientcert.pem" 2>/dev/null
    for ((index = 1; index <= count; index++)); do
        host="h${index}"
        mkdir -p "${pki}/${host}"
        certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "${pki}/${host}/serverkey.pem" 2>/dev/null
        printf 'cn = virtops-%s-%s\ndns_name = virtops-%s-%s\nip_address = 169.254.%s.%d\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' \
            "${run}" "${host}" "${run}" "${host}" "${k}" "${index}" >"${pki}/${host}/server.info"
        certtool --generate-certificate --load-privkey "${pki}/${host}/serverkey.pem" \
            --load-ca-certificate "${pki}/cacert.pem" --load-ca-privkey "${pki}/cakey.pem" \
            --template "${pki}/${host}/server.info" --outfile "${pki}/${host}/servercert.pem" 2>/dev/null
    done
}

cmd_start() {
    local run=$1 count=$2 owner=${3:-${PPID}} host fleet k index pids=() pid failed=0
    check_run_id "${run}"
    if ! [[ ${count} =~ ^[0-9]+$ ]] || ((count < 1 || count > 16)); then
        die "N must be 1-16, got '${count}'"
    fi
    [[ ${owner} =~ ^[0-9]+$ ]] || die "OWNER_PID must be a process id, got '${owner}'"
    [[ ${EUID} -eq 0 ]] || die "must run as root"
    command -v sshd >/dev/null || [[ -x /usr/sbin/sshd ]] || die "sshd is missing (apt-get install openssh-server)"
    command -v virt-ssh-helper >/dev/null || die "virt-ssh-helper is missing (libvirt-clients)"
    fleet=$(fleet_dir "${run}")
    mkdir -p "${STATE_ROOT}" "$(dirname "${LOCK_FILE}")"
    exec 9>"${LOCK_FILE}"
    flock 9
    [[ ! -e ${fleet} ]] || die "fleet '${run}' exists already (${fleet}); stop it first"
    netns_exists "$(netns_name "${run}" sw)" && die "network namespace $(netns_name "${run}" sw) exists already"
    k=$(pick_subnet) || die "no free subnet in 169.254.160-199.0/24"
    mkdir -p "${fleet}"
    # The process the fleet belongs to: `stop --stale` removes fleets whose owner is gone.
    printf '%s %s\n' "${owner}" "$(owner_start_time "${owner}")" >"${fleet}/owner"
    printf '%s\n' "${k}" >"${fleet}/subnet"
    flock -u 9
    exec 9>&-   # the daemons started below must not inherit it
    # Whatever fails from here on, leave nothing behind.
    STARTING=${run}
    trap 'if [[ -n ${STARTING} ]]; then log "start failed; cleaning up"; cmd_stop "${STARTING}" >/dev/null 2>&1 || true; fi' EXIT
    : >"${fleet}/hosts"
    {
        printf '127.0.0.1 localhost\n::1 localhost\n'
        for ((index = 1; index <= count; index++)); do
            printf 'h%d\n' "${index}" >>"${fleet}/hosts"
            printf '169.254.%s.%d virtops-%s-h%d\n' "${k}" "${index}" "${run}" "${index}"
        done
    } >"${fleet}/etc-hosts"
    write_fleet_ssh "${run}" "${k}"
    write_fleet_tls "${run}" "${k}" "${count}" || { log "TLS certificates failed: no qemu+tls://"; rm -rf "${fleet}/pki"; }
    start_network "${run}" "${k}"
    # every host at once: configs, host keys, daemons
    index=0
    for host in $(hosts_of "${run}"); do
        index=$((index + 1))
        (write_configs "${run}" "${host}" "${k}" "${index}" && start_daemons "${run}" "${host}") &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "${pid}" || failed=1; done
    ((failed == 0)) || die "starting the daemons failed"
    : >"${fleet}/ssh/known_hosts"
    index=0
    for host in $(hosts_of "${run}"); do
        index=$((index + 1))
        printf '169.254.%s.%d,virtops-%s-%s %s\n' "${k}" "${index}" "${run}" "${host}" \
            "$(cut -d' ' -f1,2 "$(state_dir "${run}" "${host}")/ssh/ssh_host_ed25519_key.pub")" >>"${fleet}/ssh/known_hosts"
    done
    # libvirt's qemu+ssh:// transport runs the system's ssh: point it at this fleet's files
    mkdir -p "${SSH_CONF_DIR}"
    sed -e '/ControlMaster\|ControlPath\|ControlPersist/d' "${fleet}/ssh/config" >"$(ssh_conf_file "${run}").tmp"
    mv "$(ssh_conf_file "${run}").tmp" "$(ssh_conf_file "${run}")"
    pids=()
    index=0
    for host in $(hosts_of "${run}"); do
        index=$((index + 1))
        wait_ready "${run}" "${host}" "169.254.${k}.${index}" &
        pids+=($!)
    done
    index=0
    for pid in "${pids[@]}"; do
        index=$((index + 1))
        wait "${pid}" || {
            tail -n 20 "$(state_dir "${run}" "h${index}")/log/libvirtd.log" "$(state_dir "${run}" "h${index}")/log/sshd.log" >&2 || true
            failed=1
        }
    done
    ((failed == 0)) || die "a host of fleet ${run} did not answer within ${WAIT_SECONDS}s"
    STARTING=
    trap - EXIT
    cmd_facts "${run}"
}

cmd_facts() {
    local run=$1 host fleet k index=0
    fleet=$(fleet_dir "${run}")
    k=$(subnet_of "${run}")
    printf 'RUN_ID=%s\nSUBNET=169.254.%s.0/24\nCONTROLLER_ADDRESS=169.254.%s.254\n' "${run}" "${k}" "${k}"
    printf 'SSH_KEY=%s/ssh/id_ed25519\nKNOWN_HOSTS=%s/ssh/known_hosts\nSSH_CONFIG=%s/ssh/config\n' "${fleet}" "${fleet}" "${fleet}"
    printf 'STATE=%s\nCONTROL_DIR=%s/cp\nHOSTS=%s\n' "${fleet}" "${fleet}" "$(hosts_of "${run}" | xargs)"
    for host in $(hosts_of "${run}"); do
        index=$((index + 1))
        printf '%s_NETNS=%s\n' "${host^^}" "$(netns_name "${run}" "${host}")"
        printf '%s_HOSTNAME=virtops-%s-%s\n' "${host^^}" "${run}" "${host}"
        printf '%s_ADDRESS=169.254.%s.%d\n' "${host^^}" "${k}" "${index}"
        printf '%s_URI=%s\n' "${host^^}" "$(uri_of "${run}" "${host}")"
        printf '%s_SSH_URI=qemu+ssh://root@169.254.%s.%d/system?keyfile=%s/ssh/id_ed25519&no_verify=1\n' \
            "${host^^}" "${k}" "${index}" "${fleet}"
        printf '%s_TCP_URI=qemu+tcp://169.254.%s.%d/system\n' "${host^^}" "${k}" "${index}"
        if [[ -f ${fleet}/pki/${host}/servercert.pem ]]; then
            printf '%s_TLS_URI=qemu+tls://169.254.%s.%d/system?pkipath=%s/pki\n' "${host^^}" "${k}" "${index}" "${fleet}"
        fi
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

fleet_namespaces() {
    local run=$1
    ip netns list | awk '{print $1}' | grep -E "^vf-${run}-(h[0-9]+|sw)$" || true
}

cmd_stop() {
    local run=$1 ns i fleet cp
    check_run_id "${run}"
    [[ ${EUID} -eq 0 ]] || die "must run as root"
    fleet=$(fleet_dir "${run}")
    # the controller's ssh connection masters of this fleet (ControlPersist)
    if [[ -d ${fleet}/cp ]]; then
        for cp in "${fleet}"/cp/*; do
            [[ -S ${cp} ]] && ssh -o ControlPath="${cp}" -O exit fleet-host >/dev/null 2>&1 || true
        done
    fi
    rm -f "$(ssh_conf_file "${run}")" "$(ssh_conf_file "${run}").tmp"
    local namespaces
    namespaces=$(fleet_namespaces "${run}")
    for ns in ${namespaces}; do signal_netns "${ns}" TERM; done
    for ((i = 0; i < 40; i++)); do
        local left=0
        for ns in ${namespaces}; do
            [[ -n $(ip netns pids "${ns}" 2>/dev/null) ]] && left=1
        done
        [[ ${left} -eq 0 ]] && break
        sleep 0.25
    done
    for ns in ${namespaces}; do signal_netns "${ns}" KILL; done
    # deleting a namespace deletes its veth ends, and with them their peers
    for ns in ${namespaces}; do
        if netns_exists "${ns}"; then ip netns delete "${ns}"; fi
    done
    # the controller's port goes with the switch namespace (the kernel frees it a moment later);
    # delete it now so its route is gone before this returns
    ip link delete "$(ctl_veth "${run}")" >/dev/null 2>&1 || true
    if [[ -d ${fleet} ]]; then
        if grep -q " ${fleet}" /proc/self/mounts; then
            die "something is still mounted under ${fleet}; not removing it"
        fi
        rm -rf --one-file-system "${fleet:?}"
    fi
    rmdir "${STATE_ROOT}" 2>/dev/null || true
    log "fleet ${run} stopped and removed"
}

cmd_stop_all() {
    local run
    declare -A runs=()
    for run in $(ip netns list | sed -n 's/^vf-\([a-z0-9]\{1,8\}\)-\(h[0-9]\+\|sw\)\b.*/\1/p'); do runs[${run}]=1; done
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
        [[ -d ${dir} ]] || continue
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
        log "fleet ${run}: owner gone, removing it"
        cmd_stop "${run}"
    done
}

cmd_status() {
    local run=$1 host ns uri rc=0 index=0 k
    check_run_id "${run}"
    [[ -r $(fleet_dir "${run}")/hosts ]] || { printf 'fleet %s: not found\n' "${run}"; return 1; }
    k=$(subnet_of "${run}")
    for host in $(hosts_of "${run}"); do
        index=$((index + 1))
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
        if ssh -F "$(fleet_dir "${run}")/ssh/config" "169.254.${k}.${index}" hostname >/dev/null 2>&1; then
            printf '  ssh root@169.254.%s.%d answers\n' "${k}" "${index}"
        else
            printf '  ssh root@169.254.%s.%d does NOT answer\n' "${k}" "${index}"
            rc=1
        fi
    done
    return ${rc}
}

case ${1:-} in
    start) cmd_start "${2:-}" "${3:-}" "${4:-}" ;;
    stop)
        case ${2:-} in
            --all) cmd_stop_all ;;
            --stale) cmd_stop_stale ;;
            *) cmd_stop "${2:-}" ;;
        esac ;;
    status) cmd_status "${2:-}" ;;
    facts) check_run_id "${2:-}"; cmd_facts "$2" ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
