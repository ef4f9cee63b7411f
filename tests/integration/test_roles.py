# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles against this machine's real libvirtd.

* ``molecule test`` of each role's ``default`` scenario (delegated driver): converge,
  idempotence (a second converge changes nothing), verify (real state through libvirt and the
  guest agent), destroy. Names start with the session PREFIX, so the ``qemu`` fixture removes
  anything a failed run leaves behind.
* ``playbooks/demo.yml`` as ``make demo`` runs it (with a unique prefix): the whole story from
  nothing back to nothing, also when it is run twice with ``keep=true``.
"""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from virtops_helpers import PREFIX, ROOT, playbook_env, run_playbook

VENV_BIN = Path(sys.executable).parent
ANSI = re.compile(r'\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\')
# The kvm_host scenario changes host-wide settings (KSM scan rate, /etc/tmpfiles.d, /etc/sysctl.d):
# one run at a time on this machine, whoever starts it (`make molecule` takes the same lock).
LOCK_DIR = Path('/run/lock') if Path('/run/lock').is_dir() else Path('/tmp')


def _names_with(conn, prefix):
    names = [d.name() for d in conn.listAllDomains(0)]
    names += [n.name() for n in conn.listAllNetworks(0)]
    names += [p.name() for p in conn.listAllStoragePools(0)]
    return sorted(n for n in names if n.startswith(prefix))


@pytest.mark.parametrize('role', ['kvm_host', 'kvm_guest'])
def test_molecule_scenario(role, qemu, tmp_path):
    prefix = '%smol-' % PREFIX
    env = playbook_env(VIRTOPS_MOLECULE_PREFIX=prefix, MOLECULE_EPHEMERAL_DIRECTORY=str(tmp_path / 'molecule'))
    started = time.monotonic()
    with open(LOCK_DIR / ('virtops-molecule-%s.lock' % role), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(
            [str(VENV_BIN / 'molecule'), 'test'],
            cwd=ROOT / 'roles' / role,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    output = ANSI.sub('', proc.stdout + proc.stderr)
    assert proc.returncode == 0, 'molecule test of %s failed (rc=%s) after %.0f s:\n%s' % (
        role,
        proc.returncode,
        time.monotonic() - started,
        output[-12000:],
    )
    # every step of the sequence ran and passed; idempotence means the second converge changed nothing
    for step in ('syntax', 'prepare', 'converge', 'idempotence', 'verify', 'destroy'):
        assert re.search(r'%s: Executed: Successful' % step, output), '%s step did not pass:\n%s' % (
            step,
            output[-6000:],
        )
    assert not re.search(r'Executed: Failed', output), output[-6000:]
    # destroy removed everything the scenario created
    assert _names_with(qemu, prefix) == []
    assert not list(Path('/var/lib/libvirt/images').glob(prefix + '*'))


def _demo(prefix, *extra):
    return subprocess.run(
        [
            str(VENV_BIN / 'ansible-playbook'),
            '-i',
            'localhost,',
            '-c',
            'local',
            '-e',
            'ansible_python_interpreter=%s' % sys.executable,
            '-e',
            'demo_prefix=%s' % prefix,
            *extra,
            str(ROOT / 'playbooks' / 'demo.yml'),
        ],
        cwd=ROOT,
        env=playbook_env(),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def _recap(output):
    match = re.search(r'localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', output)
    assert match, output[-4000:]
    return dict(zip(('ok', 'changed', 'unreachable', 'failed'), map(int, match.groups())))


def test_demo_keep_rerun_and_teardown(qemu):
    prefix = '%sdemo-' % PREFIX
    # first run keeps everything: two running guests that ran their command through the agent
    first = _demo(prefix, '-e', 'keep=true')
    out = ANSI.sub('', first.stdout + first.stderr)
    assert first.returncode == 0, out[-8000:]
    for n in (1, 2):
        assert re.search(r'%s%d: running \((kvm|qemu)\), kernel \S+' % (re.escape(prefix), n), out), out[-4000:]
        assert 'command output: HELLO FROM %s%d' % (prefix.upper(), n) in out, out[-4000:]
    running = {d.name() for d in qemu.listAllDomains(0) if d.isActive()}
    assert {'%s1' % prefix, '%s2' % prefix} <= running
    # a second run with keep=true changes nothing
    second = _demo(prefix, '-e', 'keep=true')
    out = ANSI.sub('', second.stdout + second.stderr)
    assert second.returncode == 0, out[-8000:]
    assert _recap(out)['changed'] == 0, out[-8000:]
    assert '(already running)' in out
    # a normal run tears everything down
    third = _demo(prefix)
    out = ANSI.sub('', third.stdout + third.stderr)
    assert third.returncode == 0, out[-8000:]
    assert 'removed everything' in out
    assert _names_with(qemu, prefix) == []
    assert not list(Path('/var/lib/libvirt/images').glob(prefix + '*'))


def test_demo_cleans_up_when_a_step_fails(qemu):
    prefix = '%sdemofail-' % PREFIX
    proc = _demo(prefix, '-e', 'demo_image_dir=/nonexistent/virtops-test')
    out = ANSI.sub('', proc.stdout + proc.stderr)
    assert proc.returncode != 0, out[-4000:]
    assert 'The demo failed (everything it created was removed)' in out, out[-4000:]
    assert _names_with(qemu, prefix) == []
    assert not list(Path('/var/lib/libvirt/images').glob(prefix + '*'))


def test_host_provision_decommission_playbooks(qemu, test_image, tmp_path):
    """playbooks/kvm_host.yml, provision.yml and decommission.yml from one inventory."""
    prefix = '%spb-' % PREFIX
    pool, net, guest, guest2 = prefix + 'pool', prefix + 'net', prefix + 'g1', prefix + 'g2'
    inventory = tmp_path / 'inventory.json'
    host = {
        'ansible_connection': 'local',
        'ansible_python_interpreter': sys.executable,
        'kvm_host_install_packages': False,
        'kvm_host_pools': [{'name': pool, 'type': 'dir', 'target': '/var/lib/libvirt/images/' + pool}],
        'kvm_host_networks': [{'name': net, 'forward': 'isolated'}],
        'kvm_guest_default_pool': pool,
        'kvm_guest_base_volumes': [{'name': prefix + 'base.img', 'src': test_image['data'], 'format': 'raw'}],
        'kvm_guest_guests': [
            {
                'name': guest,
                'memory': '256MiB',
                'boot': {'kernel': test_image['kernel'], 'initrd': test_image['initrd'], 'cmdline': 'console=ttyS0'},
                'interfaces': [{'type': 'network', 'source': net}],
                'volumes': [
                    {'name': guest + '.qcow2', 'backing': {'pool': pool, 'name': prefix + 'base.img'}, 'target': 'vda'}
                ],
                'commands': [['uname', '-r']],
            },
            {
                'name': guest2,
                'memory': '256MiB',
                'boot': {'kernel': test_image['kernel'], 'initrd': test_image['initrd'], 'cmdline': 'console=ttyS0'},
                'interfaces': [{'type': 'user'}],
                'wait_for': 'agent',
            },
        ],
    }
    inventory.write_text(json.dumps({'hypervisors': {'hosts': {'localhost': host}}}))

    def play(name, *extra):
        proc = subprocess.run(
            [str(VENV_BIN / 'ansible-playbook'), '-i', str(inventory), *extra, str(ROOT / 'playbooks' / name)],
            cwd=ROOT,
            env=playbook_env(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        out = ANSI.sub('', proc.stdout + proc.stderr)
        assert proc.returncode == 0, '%s failed:\n%s' % (name, out[-8000:])
        return out

    play('kvm_host.yml')
    assert qemu.storagePoolLookupByName(pool).isActive()
    assert qemu.networkLookupByName(net).isActive()
    out = play('provision.yml')
    for name in (guest, guest2):
        assert re.search(r'%s: running \(started now\), kernel \S+, agent after' % re.escape(name), out), out[-4000:]
        assert qemu.lookupByName(name).isActive()
    # the agent wait is quiet: no polling loop that reports "FAILED - RETRYING" on a healthy run
    assert 'RETRYING' not in out, out[-6000:]
    again = play('provision.yml')
    assert _recap(again)['changed'] == 0
    assert 'RETRYING' not in again, again[-6000:]
    out = play('decommission.yml', '-e', 'decommission_host=true', '-e', 'decommission_delete_storage=true')
    assert 'RETRYING' not in out, out[-6000:]  # the running guests' removals are waited for quietly
    assert _names_with(qemu, prefix) == []
    assert not list(Path('/var/lib/libvirt/images').glob(prefix + '*'))


def _play(playbook, tmp_path, *extra, name='play.yml'):
    path = tmp_path / name
    path.write_text(json.dumps(playbook))
    return run_playbook(path, *extra, cwd=ROOT, timeout=900)


def _teardown_play(pool, net, guest, with_guests=True):
    roles = []
    if with_guests:
        roles.append(
            {
                'role': 'virtops.libvirt.kvm_guest',
                'vars': {
                    'kvm_guest_default_pool': pool,
                    'kvm_guest_guests': [
                        {
                            'name': guest,
                            'state': 'absent',
                            'delete_volumes': True,
                            'volumes': [{'name': guest + '.qcow2'}],
                        }
                    ],
                },
            }
        )
    roles.append(
        {
            'role': 'virtops.libvirt.kvm_host',
            'vars': {
                'kvm_host_install_packages': False,
                'kvm_host_show_summary': False,
                'kvm_host_pools': [{'name': pool, 'state': 'absent', 'delete_storage': True}],
                'kvm_host_networks': [{'name': net, 'state': 'absent'}],
            },
        }
    )
    return [{'name': 'teardown', 'hosts': 'localhost', 'gather_facts': False, 'roles': roles}]


def test_teardown_guests_first(qemu, test_image, tmp_path):
    """kvm_host refuses to remove a pool and a network a guest uses, and says to remove the guests
    first; a check-mode teardown (kvm_guest then kvm_host) predicts and changes nothing; the real
    one removes everything, and a re-run changes nothing."""
    from virtops_helpers import run_module

    prefix = '%std-' % PREFIX
    pool, net, guest = prefix + 'pool', prefix + 'net', prefix + 'g1'
    pool_dir = '/var/lib/libvirt/images/' + pool
    assert run_module('storage_pool', dict(name=pool, type='dir', target=pool_dir))['changed']
    assert run_module('network', dict(name=net, forward='isolated'))['changed']
    assert run_module('volume', dict(pool=pool, name=guest + '.qcow2', capacity='16MiB'))['changed']
    spec = dict(
        name=guest,
        memory='128MiB',
        boot=dict(kernel=test_image['kernel'], initrd=test_image['initrd'], cmdline='console=ttyS0'),
        disks=[dict(target='vda', pool=pool, volume=guest + '.qcow2')],
        interfaces=[dict(type='network', source=net)],
        state='present',
    )
    assert run_module('guest', spec)['changed']

    def exists():
        return sorted(_names_with(qemu, prefix)), Path(pool_dir, guest + '.qcow2').exists()

    before = exists()
    assert before == (sorted([guest, net, pool]), True)

    # kvm_host alone: refused, with the guest named and the order to follow; nothing removed
    rc, out = _play(_teardown_play(pool, net, guest, with_guests=False), tmp_path, name='host-only.yml')
    assert rc != 0, out[-4000:]
    assert "storage pool '%s' is used by guest '%s'" % (pool, guest) in out, out[-4000:]
    assert "network '%s' is used by guest '%s'" % (net, guest) in out, out[-4000:]
    assert 'Remove the guests first' in out and 'Nothing was removed' in out, out[-4000:]
    assert exists() == before

    # check mode of the whole teardown: predicted, not refused, nothing changed
    rc, out = _play(_teardown_play(pool, net, guest), tmp_path, '--check', name='check.yml')
    assert rc == 0, out[-6000:]
    assert _recap(out)['changed'] > 0, out[-4000:]
    assert 'storage pool would be removed after the guests: %s' % pool in out, out[-4000:]
    assert 'network would be removed after the guests: %s' % net in out, out[-4000:]
    assert exists() == before
    assert 'RETRYING' not in out, out[-6000:]  # the removals are waited for quietly

    # the real teardown, then a re-run that finds nothing to do
    rc, out = _play(_teardown_play(pool, net, guest), tmp_path, name='real.yml')
    assert rc == 0, out[-6000:]
    assert 'RETRYING' not in out, out[-6000:]
    assert exists() == ([], False)
    assert not Path(pool_dir).exists()
    rc, out = _play(_teardown_play(pool, net, guest), tmp_path, name='real.yml')
    assert rc == 0, out[-6000:]
    assert _recap(out)['changed'] == 0, out[-6000:]


MANAGED_NS = 'https://virtops.dev/xmlns/libvirt/managed/1'


def _label(qemu, name):
    """The label of a guest's ``managed`` marker (persistent definition), or None."""
    import libvirt

    try:
        text = qemu.lookupByName(name).metadata(
            libvirt.VIR_DOMAIN_METADATA_ELEMENT, MANAGED_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG
        )
    except libvirt.libvirtError:
        return None
    match = re.search(r'label="([^"]*)"', text) or re.search(r"label='([^']*)'", text)
    return match.group(1) if match else None


def _removed(out):
    match = re.search(r'removed=<([^>]*)>', out)
    assert match, out[-4000:]
    return sorted(n for n in match.group(1).split(',') if n)


def test_guest_role_one_task_and_prune(qemu, test_image, tmp_path):
    """kvm_guest reconciles the host's volumes and guests in one objects task: check mode on an
    empty pool predicts and makes nothing; an invalid guest fails the run naming the entry, with
    nothing changed; kvm_guest_prune removes the guests with the role's label that the list no
    longer names, and never a guest without the marker or with another label."""
    from virtops_helpers import run_module

    prefix = '%sprn-' % PREFIX
    pool, pool_dir, label = prefix + 'pool', '/var/lib/libvirt/images/%spool' % prefix, prefix + 'label'
    g1, g2, g3, g4, bad = (prefix + s for s in ('g1', 'g2', 'g3', 'g4', 'bad'))
    unmarked, foreign = prefix + 'unmarked', prefix + 'foreign'
    boot = {'kernel': test_image['kernel'], 'initrd': test_image['initrd'], 'cmdline': 'console=ttyS0'}

    def guest(name, **extra):
        spec = {
            'name': name,
            'memory': '64MiB',
            'boot': boot,
            'start': False,
            'volumes': [{'name': name + '.qcow2', 'capacity': '8MiB', 'format': 'qcow2', 'target': 'vda'}],
        }
        spec.update(extra)
        return spec

    def play(name, guests, *extra, prune=False, role_label=label):
        role_vars = {
            'kvm_guest_default_pool': pool,
            'kvm_guest_guests': guests,
            'kvm_guest_label': role_label,
            'kvm_guest_prune': prune,
        }
        playbook = [
            {
                'name': name,
                'hosts': 'localhost',
                'gather_facts': False,
                'roles': [{'role': 'virtops.libvirt.kvm_guest', 'vars': role_vars}],
                'tasks': [{'ansible.builtin.debug': {'msg': 'removed=<{{ kvm_guest_removed | join(",") }}>'}}],
            }
        ]
        return _play(playbook, tmp_path, *extra, name=name + '.yml')

    def domains():
        return sorted(n for n in (d.name() for d in qemu.listAllDomains(0)) if n.startswith(prefix))

    def volumes():
        return sorted(p.name for p in Path(pool_dir).iterdir())

    try:
        assert run_module('storage_pool', dict(name=pool, type='dir', target=pool_dir))['changed']
        assert run_module('guest', dict(name=unmarked, memory='64MiB', boot=boot))['changed']
        # a guest another task manages: the objects module marks it with another label
        marked = dict(guests=[dict(name=foreign, memory='64MiB', boot=boot)], label=prefix + 'other')
        other = run_module('objects', marked)
        assert other['changed'] and not other.get('failed'), other
        assert _label(qemu, unmarked) is None and _label(qemu, foreign) == prefix + 'other'
        before = domains(), volumes()

        # check mode on a pool without the guests' volumes: predicted, nothing made
        rc, out = play('check', [guest(g1), guest(g2), guest(g3)], '--check')
        assert rc == 0, out[-6000:]
        assert _recap(out)['changed'] > 0, out[-4000:]
        assert (domains(), volumes()) == before

        rc, out = play('create', [guest(g1), guest(g2), guest(g3)])
        assert rc == 0, out[-6000:]
        assert domains() == sorted([g1, g2, g3, unmarked, foreign])
        assert volumes() == sorted(n + '.qcow2' for n in (g1, g2, g3))
        assert {n: _label(qemu, n) for n in (g1, g2, g3)} == dict.fromkeys((g1, g2, g3), label)
        assert not qemu.lookupByName(g1).isActive()  # start: false
        rc, out = play('create', [guest(g1), guest(g2), guest(g3)])
        assert rc == 0 and _recap(out)['changed'] == 0, out[-6000:]

        # an invalid entry: the task names it and changes nothing, also not the valid new guest after it
        rc, out = play('invalid', [guest(g1), guest(g2), guest(g3), guest(bad, memory='lots'), guest(g4)])
        assert rc != 0, out[-4000:]
        assert 'guests[3] (%s)' % bad in out, out[-4000:]
        assert g4 not in domains() and g4 + '.qcow2' not in volumes()
        assert bad not in domains() and bad + '.qcow2' not in volumes()

        # prune in check mode: predicted, nothing removed
        rc, out = play('prune', [guest(g1)], '--check', prune=True)
        assert rc == 0, out[-6000:]
        assert _removed(out) == sorted([g2, g3])
        assert domains() == sorted([g1, g2, g3, unmarked, foreign])

        # prune: the marked guests the list no longer names go; the unmarked and foreign ones stay
        rc, out = play('prune', [guest(g1)], prune=True)
        assert rc == 0, out[-6000:]
        assert _removed(out) == sorted([g2, g3])
        assert domains() == sorted([g1, unmarked, foreign])
        assert _label(qemu, unmarked) is None and _label(qemu, foreign) == prefix + 'other'
        rc, out = play('prune', [guest(g1)], prune=True)
        assert rc == 0, out[-6000:]
        assert _recap(out)['changed'] == 0 and _removed(out) == [], out[-6000:]
    finally:
        for name in (g1, g2, g3, g4, bad, unmarked, foreign):
            run_module('guest', dict(name=name, state='absent', force=True, shutdown_timeout=0))
        run_module('storage_pool', dict(name=pool, state='absent', delete_storage=True))
    assert not Path(pool_dir).exists()


def test_guest_role_snapshot_before_change(qemu, test_image, tmp_path):
    """kvm_guest_snapshot_before_change: a run that changes an existing guest snapshots it first
    (the snapshot holds the definition before the change) and keeps the newest of the prefix; a
    new guest, an unchanged re-run and check mode take none; a guest's own setting turns it off."""
    import libvirt
    from lxml import etree
    from virtops_helpers import run_module

    prefix = '%ssbc-' % PREFIX
    pool, pool_dir = prefix + 'pool', '/var/lib/libvirt/images/%spool' % prefix
    g1, g2 = prefix + 'g1', prefix + 'g2'
    boot = {'kernel': test_image['kernel'], 'initrd': test_image['initrd'], 'cmdline': 'console=ttyS0'}

    def guest(name, memory, **extra):
        spec = {
            'name': name,
            'memory': memory,
            'boot': boot,
            'start': False,
            'volumes': [{'name': name + '.qcow2', 'capacity': '8MiB', 'format': 'qcow2', 'target': 'vda'}],
        }
        spec.update(extra)
        return spec

    def play(name, memory, *extra):
        role_vars = {
            'kvm_guest_default_pool': pool,
            'kvm_guest_label': prefix + 'label',
            'kvm_guest_snapshot_before_change': {'prefix': 'pre-change-', 'keep_newest': 2},
            'kvm_guest_guests': [guest(g1, memory), guest(g2, memory, snapshot_before_change=False)],
        }
        playbook = [
            {
                'name': name,
                'hosts': 'localhost',
                'gather_facts': False,
                'roles': [{'role': 'virtops.libvirt.kvm_guest', 'vars': role_vars}],
            }
        ]
        rc, out = _play(playbook, tmp_path, *extra, name=name + '.yml')
        assert rc == 0, out[-6000:]
        return _recap(out)['changed']

    def snapshots(name):
        """{snapshot name: the guest's memory (KiB) in the definition it saved}, by libvirt."""
        found = {}
        for snap in qemu.lookupByName(name).listAllSnapshots(0):
            root = etree.fromstring(snap.getXMLDesc(0))
            found[snap.getName()] = int(root.findtext('domain/memory'))
        return found

    def memory(name):
        return int(
            etree.fromstring(qemu.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findtext('memory')
        )

    try:
        assert run_module('storage_pool', dict(name=pool, type='dir', target=pool_dir))['changed']
        # new guests: nothing to save, no snapshot; the same run again changes nothing
        assert play('create', '64MiB') > 0
        assert snapshots(g1) == {} and snapshots(g2) == {}
        assert play('create', '64MiB') == 0
        assert snapshots(g1) == {}
        # check mode predicts the change and the snapshot, takes none, changes nothing
        assert play('check', '80MiB', '--check') > 0
        assert snapshots(g1) == {} and memory(g1) == 64 * 1024
        # the change: g1 is snapshotted first (its definition before the change), g2 opted out
        assert play('change', '80MiB') > 0
        first = snapshots(g1)
        assert list(first.values()) == [64 * 1024], first
        assert next(iter(first)).startswith('pre-change-')
        assert memory(g1) == memory(g2) == 80 * 1024 and snapshots(g2) == {}
        assert play('change', '80MiB') == 0
        assert snapshots(g1) == first
        # two more changes: the newest two of the prefix are kept, the oldest is removed
        assert play('change-2', '96MiB') > 0
        assert play('change-3', '112MiB') > 0
        kept = snapshots(g1)
        assert sorted(kept.values()) == [80 * 1024, 96 * 1024] and not set(first) & set(kept), kept
        assert memory(g1) == 112 * 1024 and snapshots(g2) == {}
    finally:
        for name in (g1, g2):
            try:
                dom = qemu.lookupByName(name)
                for snap in dom.listAllSnapshots(0):
                    snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
            except libvirt.libvirtError:
                pass
            run_module('guest', dict(name=name, state='absent', force=True, shutdown_timeout=0))
        run_module('storage_pool', dict(name=pool, state='absent', delete_storage=True))
    assert not Path(pool_dir).exists()


def test_guest_role_clones_guests_from_a_template(qemu, test_image, tmp_path):
    """kvm_guest with clone_from: N guests cloned from one stopped template in one run, each with
    its own UUID, MAC and overlay on the template's volume; the re-run changes nothing (clone_from
    is only used on create); the template is left as it was."""
    import libvirt
    from lxml import etree
    from virtops_helpers import run_module

    prefix = '%sclone-' % PREFIX
    pool, pool_dir = prefix + 'pool', '/var/lib/libvirt/images/%spool' % prefix
    template = prefix + 'tmpl'
    clones = [prefix + 'c%d' % i for i in (1, 2, 3)]
    boot = {'kernel': test_image['kernel'], 'initrd': test_image['initrd'], 'cmdline': 'console=ttyS0'}

    def play(name, *extra):
        role_vars = {
            'kvm_guest_default_pool': pool,
            'kvm_guest_label': prefix + 'label',
            'kvm_guest_guests': [
                {'name': n, 'clone_from': {'guest': template, 'mode': 'linked'}, 'memory': '80MiB', 'start': False}
                for n in clones
            ],
        }
        playbook = [
            {
                'name': name,
                'hosts': 'localhost',
                'gather_facts': False,
                'roles': [{'role': 'virtops.libvirt.kvm_guest', 'vars': role_vars}],
            }
        ]
        rc, out = _play(playbook, tmp_path, *extra, name=name + '.yml')
        assert rc == 0, out[-6000:]
        return _recap(out)['changed']

    def facts(name):
        root = etree.fromstring(qemu.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        disk = root.find("devices/disk[@device='disk']")
        return dict(
            uuid=root.findtext('uuid'),
            mac=root.find('devices/interface/mac').get('address'),
            source=dict(disk.find('source').attrib),
            memory=int(root.findtext('memory')),
        )

    try:
        assert run_module('storage_pool', dict(name=pool, type='dir', target=pool_dir))['changed']
        assert run_module('volume', dict(pool=pool, name='tmpl.qcow2', capacity='16MiB', format='qcow2'))['changed']
        created = run_module(
            'guest',
            dict(
                name=template,
                memory='64MiB',
                boot=boot,
                disks=[dict(target='vda', pool=pool, volume='tmpl.qcow2')],
                interfaces=[dict(type='user')],
            ),
        )
        assert created['changed'], created
        before = facts(template)
        # check mode: the clones are predicted, nothing is made
        assert play('check', '--check') > 0
        assert not {d.name() for d in qemu.listAllDomains()} & set(clones)
        assert play('clone') > 0
        seen = [facts(n) for n in clones]
        assert len({f['uuid'] for f in seen + [before]}) == 4 and len({f['mac'] for f in seen + [before]}) == 4
        for name, fact in zip(clones, seen):
            assert fact['memory'] == 80 * 1024  # the role's options apply on top of the clone
            src = fact['source']
            overlay = (
                qemu.storagePoolLookupByName(src['pool']).storageVolLookupByName(src['volume'])
                if 'volume' in src
                else qemu.storageVolLookupByPath(src['file'])
            )
            backing = etree.fromstring(overlay.XMLDesc(0)).findtext('backingStore/path')
            assert backing == pool_dir + '/tmpl.qcow2', (name, backing)
        assert play('rerun') == 0
        assert [facts(n) for n in clones] == seen and facts(template) == before
    finally:
        for name in clones:
            run_module('guest', dict(name=name, state='absent', delete_volumes=True))
        run_module('guest', dict(name=template, state='absent'))
        run_module('storage_pool', dict(name=pool, state='absent', delete_storage=True))
    assert not Path(pool_dir).exists()
