# SPDX-License-Identifier: GPL-3.0-or-later
"""cloud-init for real: the kvm_guest role provisions two guests from the real Debian cloud image
(scripts/build-cloud-image.sh) in a playbook, as users run it, and the tests check through the
guest agent that cloud-init applied each guest's NoCloud seed.

One module-scoped fixture boots the image once for every test here (about 1.5 min under TCG): a
base volume imported into a pool of its own, a qcow2 overlay per guest (the role's ``image``),
role-level cloud-init (a user with an SSH key and a password hash) merged with each guest's own
(write_files, runcmd, a static network config on an isolated network without a host address).
The guests' NICs reach nothing: the network has no ``<ip>``, so the host has no address on it.
The last test changes one guest's user-data: the seed is rebuilt, the result says the guest must
reboot, and a re-run changes nothing. Everything is removed afterwards, also on failure.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import random
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from virtops_helpers import PREFIX, ROOT, agent_cmd, cleanup_prefix, guest_read, guest_run, run_playbook

P = PREFIX + 'ci-'
NAMES = [P + 'g1', P + 'g2']
MACS = ['52:54:00:c1:%02x:01' % random.randrange(256), '52:54:00:c1:%02x:02' % random.randrange(256)]
ADDRS = ['198.51.100.2', '198.51.100.3']  # test net 198.51.100.0/28
SECOND_HOSTNAME = 'vtci-second'
# an SSH public key and a SHA-512 crypt hash, random per run (their format is all cloud-init checks)
_B64 = base64.b64encode(b'\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20' + random.randbytes(32)).decode()
KEY = 'ssh-ed25519 %s virtops-ci' % _B64
_CRYPT = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
HASH = '$6$%s$%s' % (''.join(random.choices(_CRYPT, k=16)), ''.join(random.choices(_CRYPT, k=86)))

PLAYBOOK = """\
- name: Cloud guests from one image
  hosts: localhost
  gather_facts: false
  roles:
    - role: virtops.libvirt.kvm_guest
  post_tasks:
    - name: Hand the results to the test (test harness only, not part of what is checked for changes)
      ansible.builtin.copy:
        content: "{{ {'results': kvm_guest_results, 'started': kvm_guest_started} | to_json }}"
        dest: "{{ ci_results_file }}"
        mode: "0600"
      changed_when: false
"""


def _install_image():
    out = subprocess.run(
        ['bash', str(ROOT / 'scripts' / 'install-cloud-image.sh')], capture_output=True, text=True, check=True
    ).stdout.split()
    paths = {Path(p).name: p for p in out}
    assert {'vmlinuz', 'initrd.img', 'debian-cloud.qcow2'} <= set(paths), out
    return paths


def _guest_vars(i, image, user_data):
    return dict(
        name=NAMES[i],
        memory='768MiB',
        vcpus=1,
        boot=dict(kernel=image['vmlinuz'], initrd=image['initrd.img'], cmdline='root=LABEL=root console=ttyS0'),
        image=P + 'base.qcow2',
        disk_size='3GiB',
        interfaces=[dict(type='network', source=P + 'net', mac=MACS[i])],
        cloud_init=dict(
            user_data=user_data,
            # the first guest's host name is the default (its name), the second's comes from meta_data
            **({'meta_data': {'local-hostname': SECOND_HOSTNAME}} if i == 1 else {}),
            network_config=dict(
                version=2,
                ethernets=dict(
                    lan={'match': {'macaddress': MACS[i]}, 'set-name': 'lan0', 'addresses': [ADDRS[i] + '/28']}
                ),
            ),
        ),
    )


def _user_data(i, extra_files=()):
    files = [dict(path='/etc/virtops-ci', content='written for guest %d\n' % (i + 1), permissions='0640')]
    return dict(
        write_files=files + list(extra_files),
        runcmd=[['sh', '-c', 'echo "runcmd on $(hostname)" > /var/tmp/virtops-runcmd']],
    )


class Fleet:
    def __init__(self, conn, tmp, image):
        self.conn, self.tmp, self.image = conn, tmp, image
        self.pool_dir = Path('/var/lib/libvirt/images') / (P + 'pool')
        self.results_file = tmp / 'results.json'
        self.playbook = tmp / 'cloud.yml'
        self.playbook.write_text(PLAYBOOK)
        self.user_data = [_user_data(0), _user_data(1)]
        # the base comes the way users fetch a cloud image: a compressed download with its checksum
        # (from a loopback server), or the plain qcow2 when the build made no .xz
        self.base_source = dict(src=image['debian-cloud.qcow2'])

    def serve(self, url):
        xz = Path(self.image['debian-cloud.qcow2.xz'])
        with xz.open('rb') as f:
            digest = hashlib.file_digest(f, 'sha256').hexdigest()
        self.base_source = dict(url='%s/%s' % (url, xz.name), checksum='sha256:' + digest)

    def vars(self):
        return dict(
            ci_results_file=str(self.results_file),
            kvm_guest_default_pool=P + 'pool',
            kvm_guest_label=P + 'fleet',
            kvm_guest_wait_for='cloud-init',
            kvm_guest_wait_timeout=900,
            kvm_guest_base_volumes=[dict(name=P + 'base.qcow2', format='qcow2', image_cache=False, **self.base_source)],
            kvm_guest_cloud_init=dict(
                user_data=dict(
                    users=[
                        dict(
                            name='virtops',
                            shell='/bin/bash',
                            lock_passwd=False,
                            hashed_passwd=HASH,
                            ssh_authorized_keys=[KEY],
                        )
                    ]
                )
            ),
            kvm_guest_guests=[_guest_vars(i, self.image, self.user_data[i]) for i in range(2)],
        )

    def run(self, *extra):
        vars_file = self.tmp / 'vars.yml'
        vars_file.write_text(yaml.safe_dump(self.vars()))
        self.results_file.unlink(missing_ok=True)
        rc, out = run_playbook(self.playbook, '-e', '@%s' % vars_file, *extra, cwd=self.tmp, timeout=1800)
        results = json.loads(self.results_file.read_text()) if self.results_file.exists() else None
        return rc, out, results

    def dom(self, i):
        return self.conn.lookupByName(NAMES[i])

    def seed_digest(self, i):
        return hashlib.sha256((self.pool_dir / ('%s-cidata.iso' % NAMES[i])).read_bytes()).hexdigest()


def _recap(output):
    match = re.search(r'localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', output)
    assert match, output[-4000:]
    return dict(zip(('ok', 'changed', 'unreachable', 'failed'), map(int, match.groups())))


def _by_name(results):
    return {r['name']: r for r in results['results']}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


@pytest.fixture(scope='module')
def fleet(qemu, tmp_path_factory):
    image = _install_image()
    fleet = Fleet(qemu, tmp_path_factory.mktemp('cloud'), image)
    server = None
    try:
        # the test's own scaffolding: a pool, and an isolated network with no host address
        fleet.pool_dir.mkdir(mode=0o755)
        pool = qemu.storagePoolDefineXML(
            "<pool type='dir'><name>%spool</name><target><path>%s</path></target></pool>" % (P, fleet.pool_dir)
        )
        pool.create(0)
        bridge = 'vtci%s' % P.split('-')[1][:6]
        qemu.networkCreateXML("<network><name>%snet</name><bridge name='%s'/></network>" % (P, bridge))
        if 'debian-cloud.qcow2.xz' in image:
            handler = functools.partial(_QuietHandler, directory=str(Path(image['debian-cloud.qcow2.xz']).parent))
            server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            fleet.serve('http://127.0.0.1:%d' % server.server_address[1])
        fleet.first = fleet.run()
        yield fleet
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        cleanup_prefix(qemu, P)
        shutil.rmtree(fleet.pool_dir, ignore_errors=True)


def test_first_run_provisions_both_guests_and_waits_for_cloud_init(fleet):
    rc, out, results = fleet.first
    assert rc == 0, out[-12000:]
    assert sorted(results['started']) == NAMES
    by_name = _by_name(results)
    for name in NAMES:
        assert by_name[name]['state'] == 'running'
        assert by_name[name]['cloud_init_status'] == 'done', out[-6000:]
    assert by_name[NAMES[0]]['hostname'] == NAMES[0]
    assert by_name[NAMES[1]]['hostname'] == SECOND_HOSTNAME
    # one base volume imported once; each guest's disk a thin overlay on it
    pool = fleet.conn.storagePoolLookupByName(P + 'pool')
    pool.refresh(0)
    volumes = set(pool.listVolumes())
    assert {P + 'base.qcow2', NAMES[0] + '.qcow2', NAMES[1] + '.qcow2'} <= volumes
    for name in NAMES:
        info = json.loads(
            subprocess.run(
                ['qemu-img', 'info', '-U', '--output=json', str(fleet.pool_dir / (name + '.qcow2'))],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert info['format'] == 'qcow2' and info['virtual-size'] == 3 * 1024**3
        assert info['backing-filename'] == str(fleet.pool_dir / (P + 'base.qcow2'))
    # the base holds the image as built (decompressed from the .xz download when there is one)
    subprocess.run(
        ['qemu-img', 'compare', '-U', str(fleet.pool_dir / (P + 'base.qcow2')), fleet.image['debian-cloud.qcow2']],
        check=True,
        capture_output=True,
    )
    # secrets of the user-data never reach the output
    assert HASH not in out


@pytest.mark.parametrize('i', [0, 1])
def test_hostname(fleet, i):
    assert fleet.first[0] == 0, fleet.first[1][-6000:]
    expected = [NAMES[0], SECOND_HOSTNAME][i]
    assert agent_cmd(fleet.dom(i), 'guest-get-host-name')['host-name'] == expected
    assert guest_read(fleet.dom(i), '/etc/hostname').decode().strip() == expected


@pytest.mark.parametrize('i', [0, 1])
def test_user_with_authorized_key_and_password_hash(fleet, i):
    dom = fleet.dom(i)
    assert guest_read(dom, '/home/virtops/.ssh/authorized_keys').decode().splitlines() == [KEY]
    passwd = guest_read(dom, '/etc/passwd').decode()
    assert re.search(r'^virtops:x:\d+:\d+:[^:]*:/home/virtops:/bin/bash$', passwd, re.M), passwd
    shadow = {line.split(':')[0]: line.split(':')[1] for line in guest_read(dom, '/etc/shadow').decode().splitlines()}
    assert shadow['virtops'] == HASH


@pytest.mark.parametrize('i', [0, 1])
def test_write_files_and_runcmd(fleet, i):
    dom = fleet.dom(i)
    assert guest_read(dom, '/etc/virtops-ci') == b'written for guest %d\n' % (i + 1)
    rc, mode = guest_run(dom, '/usr/bin/stat', '-c', '%a', '/etc/virtops-ci')
    assert (rc, mode.strip()) == (0, '640')
    hostname = [NAMES[0], SECOND_HOSTNAME][i]
    assert guest_read(dom, '/var/tmp/virtops-runcmd') == ('runcmd on %s\n' % hostname).encode()


@pytest.mark.parametrize('i', [0, 1])
def test_static_network_config_on_the_nic_matched_by_mac(fleet, i):
    interfaces = agent_cmd(fleet.dom(i), 'guest-network-get-interfaces')
    nic = [n for n in interfaces if n.get('hardware-address') == MACS[i]]
    assert len(nic) == 1, interfaces
    assert nic[0]['name'] == 'lan0'  # set-name of the match
    ipv4 = [(a['ip-address'], a['prefix']) for a in nic[0].get('ip-addresses', []) if a['ip-address-type'] == 'ipv4']
    assert ipv4 == [(ADDRS[i], 28)]


def test_rerun_changes_nothing(fleet):
    rc, out, results = fleet.run()
    assert rc == 0, out[-12000:]
    assert _recap(out)['changed'] == 0, out[-12000:]
    assert results['started'] == []
    assert not any(r['reboot_required'] for r in results['results'])
    assert HASH not in out


def test_changed_user_data_rebuilds_the_seed_and_asks_for_a_reboot(fleet):
    before = [fleet.seed_digest(0), fleet.seed_digest(1)]
    fleet.user_data[1] = _user_data(1, extra_files=[dict(path='/etc/virtops-ci-2', content='second seed\n')])
    rc, out, results = fleet.run('--diff')
    assert rc == 0, out[-12000:]
    by_name = _by_name(results)
    # only the second guest's seed was rebuilt, and it carries the new user-data
    after = [fleet.seed_digest(0), fleet.seed_digest(1)]
    assert after[0] == before[0]
    assert after[1] != before[1]
    seed = (fleet.pool_dir / ('%s-cidata.iso' % NAMES[1])).read_bytes()
    assert b'/etc/virtops-ci-2' in seed
    assert by_name[NAMES[1]]['reboot_required'] is True
    assert by_name[NAMES[0]]['reboot_required'] is False
    assert 'instance-id' in out  # the warning: per-instance modules re-run only with a new instance-id
    assert results['started'] == []
    assert fleet.dom(1).isActive()
    assert HASH not in out  # not in the diff either
    # the same again: nothing to do
    rc, out, results = fleet.run()
    assert rc == 0, out[-12000:]
    assert _recap(out)['changed'] == 0, out[-12000:]
    assert fleet.seed_digest(1) == after[1]
