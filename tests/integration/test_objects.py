# SPDX-License-Identifier: GPL-3.0-or-later
"""``objects`` on qemu:///system: a host of a pool, volumes, an isolated network and guests
reconciled in one task (through the payload Ansible builds), check mode on the empty and on the
converged host, per-object diffs, refusals before anything changes, a failure while applying that
leaves the entries before applied and no half-made object, and prune by label."""

from __future__ import annotations

import re
import sys

import libvirt
import pytest
from storage_fixtures import *  # noqa: F403  # pylint: disable=wildcard-import,unused-wildcard-import
from storage_fixtures import MODULE_ENV, example_tasks, substitute
from test_network import free_subnet, short_bridge
from test_payload import TEST_URI, state, succeeded, task
from virtops_helpers import cleanup_prefix, run_module

MARKER_NS = 'https://virtops.dev/xmlns/libvirt/managed/1'
SPACE = re.compile(r'<(capacity|allocation|available)[^>]*>[^<]*</\1>')


def run(args, check=False, diff=True):
    return run_module('objects', args, check=check, diff=diff, env=MODULE_ENV)


def ok(result):
    assert not result.get('failed'), result.get('msg')
    assert result['_rc'] == 0, result
    return result


@pytest.fixture
def host(qemu, uname, pool_dir):
    """Names for one host's objects (all start with ``uname``); everything removed afterwards."""
    yield uname
    cleanup_prefix(qemu, uname)


def look(conn, prefix):
    """Every object named with ``prefix``, as libvirt has it (definitions, run state, volumes)."""
    found = {}
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            found['guest ' + dom.name()] = (dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), dom.state()[0])
    for net in conn.listAllNetworks(0):
        if net.name().startswith(prefix):
            found['network ' + net.name()] = (net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE), net.isActive())
    for pool in conn.listAllStoragePools(0):
        if pool.name().startswith(prefix):
            # (without the space figures, which move with whatever else the host writes)
            found['pool ' + pool.name()] = (SPACE.sub('', pool.XMLDesc(0)), pool.isActive())
            if pool.isActive():
                pool.refresh(0)
                for vol in pool.listAllVolumes(0):
                    found['volume %s/%s' % (pool.name(), vol.name())] = (vol.XMLDesc(0), None)
    return found


def label_of(conn, name):
    dom = conn.lookupByName(name)
    try:
        text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, MARKER_NS, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError:
        return None
    from lxml import etree

    return etree.fromstring(text).get('label')


def fleet_host(name, pool_dir, boot_spec, guests=3):
    """A pool with a volume per guest, an isolated network, ``guests`` defined guests on them and
    one started guest (the test image, booted by TCG) on the network."""
    subnet = free_subnet()
    disk = dict(target='vda', pool=name)
    nic = dict(source=name + '-net')
    defined = [
        dict(name='%s-g%d' % (name, i), memory='128MiB', vcpus=1, disks=[dict(disk, volume='g%d.raw' % i)])
        for i in range(guests)
    ]
    for guest in defined:
        guest['interfaces'] = [nic]
    started = dict(boot_spec, name=name + '-run', state='running', interfaces=[nic])
    return dict(
        label=name,
        pools=[dict(name=name, type='dir', target=str(pool_dir))],
        networks=[dict(name=name + '-net', ip='%s/28' % subnet[1], bridge=short_bridge())],
        volumes=[dict(pool=name, name='g%d.raw' % i, capacity='16MiB', format='raw') for i in range(guests)],
        guests=defined + [started],
    )


def test_a_host_converges_in_one_task_and_stays_converged(qemu, host, pool_dir, boot_spec):
    args = fleet_host(host, pool_dir, boot_spec)
    kinds = [('pool', host), ('network', host + '-net')]
    kinds += [('volume', '%s/g%d.raw' % (host, i)) for i in range(3)]
    kinds += [('guest', '%s-g%d' % (host, i)) for i in range(3)] + [('guest', host + '-run')]

    # check mode on the empty host: every object predicted, nothing made
    assert look(qemu, host) == {}
    predicted = ok(run(args, check=True))
    assert predicted['changed'] is True
    assert [(o['kind'], o['name']) for o in predicted['objects']] == kinds
    assert all(o['changed'] and not o['failed'] for o in predicted['objects'])
    assert "guest '%s-run' started" % host in predicted['actions']
    assert look(qemu, host) == {}

    # the real run: what check mode predicted, with one diff per object
    real = ok(run(args))
    assert real['actions'] == predicted['actions']
    assert [(o['kind'], o['name']) for o in real['objects']] == kinds
    assert len(real['diff']) == len(kinds)
    assert [d['before'] for d in real['diff']] == [''] * len(kinds)
    assert real['objects'][0]['diff']['after_header'] == "storage pool '%s' (after)" % host
    made = look(qemu, host)
    assert set(made) == {'%s %s' % kind for kind in kinds}
    assert made['guest %s-run' % host][1] == libvirt.VIR_DOMAIN_RUNNING
    assert made['guest %s-g0' % host][1] == libvirt.VIR_DOMAIN_SHUTOFF
    assert "<source pool='%s' volume='g0.raw'/>" % host in made['guest %s-g0' % host][0]
    assert "<driver name='qemu' type='raw'/>" in made['guest %s-g0' % host][0]
    assert all(label_of(qemu, name) == host for kind, name in kinds if kind == 'guest')

    # the same task again: nothing changes, nothing predicted
    again = ok(run(args))
    assert again['changed'] is False and again['actions'] == [] and 'diff' not in again
    assert [o['changed'] for o in again['objects']] == [False] * len(kinds)
    assert ok(run(args, check=True))['changed'] is False
    assert look(qemu, host) == made


def test_one_object_changed_on_the_host_is_the_only_one_reconciled(qemu, host, pool_dir, boot_spec):
    args = fleet_host(host, pool_dir, boot_spec, guests=2)
    args['guests'].pop()  # no started guest here
    ok(run(args))
    args['guests'][1]['vcpus'] = 2
    predicted = ok(run(args, check=True))
    # the flat list names the guest of each change, the object's own list is the guest module's
    assert predicted['actions'] == ["guest '%s-g1': maximum vCPUs 1 -> 2" % host, "guest '%s-g1': vCPUs 1 -> 2" % host]
    changed = [o for o in predicted['objects'] if o['changed']]
    assert changed[0]['actions'] == ['maximum vCPUs 1 -> 2', 'vCPUs 1 -> 2']
    assert [o['name'] for o in changed] == [host + '-g1'] and len(predicted['diff']) == 1
    before, after = predicted['diff'][0]['before'], predicted['diff'][0]['after']
    assert "<vcpu placement='static'>1</vcpu>" in before.replace('"', "'")
    assert "<vcpu placement='static'>2</vcpu>" in after.replace('"', "'")
    real = ok(run(args))
    assert real['actions'] == predicted['actions']
    assert "<vcpu placement='static'>2</vcpu>" in qemu.lookupByName(host + '-g1').XMLDesc(
        libvirt.VIR_DOMAIN_XML_INACTIVE
    )
    assert ok(run(args))['changed'] is False


def test_an_invalid_entry_fails_naming_it_and_nothing_changes(qemu, host, pool_dir, boot_spec):
    args = fleet_host(host, pool_dir, boot_spec, guests=2)
    args['guests'][1]['memory'] = '12 parsecs'
    for check in (True, False):
        out = run(args, check=check)
        assert out['failed'] and out['_rc'] == 1 and out['changed'] is False
        assert out['msg'].startswith('guests[1] (%s-g1): memory' % host), out['msg']
        assert look(qemu, host) == {}


def test_a_planning_refusal_fails_naming_the_entry_and_nothing_changes(qemu, host, pool_dir, boot_spec):
    args = fleet_host(host, pool_dir, boot_spec, guests=2)
    args['guests'][0]['interfaces'] = [dict(source=host + '-elsewhere')]
    out = run(args)
    assert out['failed'] and out['changed'] is False
    assert out['msg'] == "guests[0] (%s-g0): interfaces[0].source: network '%s-elsewhere' does not exist" % (
        host,
        host,
    )
    assert look(qemu, host) == {}


def test_a_failure_while_applying_keeps_what_was_applied_and_no_half_made_guest(qemu, host, pool_dir, boot_spec):
    """A guest whose start libvirt refuses (its disk is missing), after valid entries: those
    stay applied and reported, the failing guest is taken back (it was new), the later guest is
    not applied."""
    args = fleet_host(host, pool_dir, boot_spec, guests=1)
    args['guests'].pop()  # no started guest
    broken = dict(boot_spec, name=host + '-broken', state='running', interfaces=[])
    broken['disks'] = [dict(target='vda', path=str(pool_dir / 'missing.raw'), format='raw')]
    later = dict(name=host + '-later', memory='128MiB')
    args['guests'] += [broken, later]
    out = run(args)
    assert out['failed'] and out['_rc'] == 1 and out['changed'] is True
    by_name = {o['name']: o for o in out['objects']}
    assert by_name[host + '-g0']['changed'] and not by_name[host + '-g0']['failed']
    assert by_name[host]['changed'] and by_name[host + '-net']['changed']
    failed = by_name[host + '-broken']
    assert failed['failed'] is True and failed['changed'] is False and failed['actions'] == []
    assert 'was not kept' in failed['msg'], failed['msg']
    assert by_name[host + '-later'] == dict(
        kind='guest', name=host + '-later', changed=False, actions=[], failed=False, done=False
    )
    assert out['not_done'] == ['guests[2] (%s-later)' % host]
    assert out['msg'].startswith('guests[1] (%s-broken): ' % host) and out['msg'].endswith(
        '(not done: guests[2] (%s-later))' % host
    )
    made = look(qemu, host)
    assert 'guest %s-g0' % host in made and 'volume %s/g0.raw' % host in made
    assert 'guest %s-broken' % host not in made and 'guest %s-later' % host not in made
    assert "guest '%s-g0' defined" % host in out['actions']
    assert not any('broken' in action for action in out['actions'])


def test_prune_removes_only_the_guests_of_its_label(qemu, host):
    guest = dict(memory='128MiB', vcpus=1)
    ok(run(dict(label=host + '-a', guests=[dict(guest, name=host + '-a1'), dict(guest, name=host + '-a2')])))
    ok(run(dict(label=host + '-b', guests=[dict(guest, name=host + '-b1')])))
    ok(run_module('guest', dict(guest, name=host + '-plain')))
    assert label_of(qemu, host + '-a2') == host + '-a' and label_of(qemu, host + '-plain') is None
    args = dict(label=host + '-a', prune=True, guests=[dict(guest, name=host + '-a1')])
    before = look(qemu, host)
    predicted = ok(run(args, check=True))
    assert predicted['actions'] == ["guest '%s-a2' undefined" % host]
    assert look(qemu, host) == before
    out = ok(run(args))
    assert out['actions'] == predicted['actions']
    assert [(o['name'], o['changed']) for o in out['objects']] == [(host + '-a1', False), (host + '-a2', True)]
    after = look(qemu, host)
    assert set(before) - set(after) == {'guest %s-a2' % host}
    assert {k: v for k, v in before.items() if k != 'guest %s-a2' % host} == after
    assert ok(run(args))['changed'] is False


def test_the_examples_run_and_converge(qemu, host, pool_dir):
    """The module's EXAMPLES, with this test's names, directory and subnet: check mode predicts
    the first on the empty host, it converges and stays converged, the second removes what it
    names."""
    (make_name, make), (remove_name, remove) = [(module, args) for module, args, _name in example_tasks('objects')]
    assert make_name == remove_name == 'objects'
    subnet = free_subnet()
    mapping = {
        'fleet-a': host,
        'vms': host,
        '/var/lib/libvirt/vms': str(pool_dir),
        'backend': host + '-backend',
        '198.51.100.1/28': '%s/28' % subnet[1],
        'web1.qcow2': 'web1.qcow2',
        'web1': host + '-web1',
        'old1': host + '-old1',
        'old1.qcow2': 'old1.qcow2',
    }
    make, remove = substitute(make, mapping), substitute(remove, mapping)
    make['guests'][0]['memory'] = '128MiB'  # (TCG, a small machine: the example's size is not the point)
    make['guests'][0]['state'] = 'present'
    predicted = ok(run(make, check=True))
    assert look(qemu, host) == {}
    real = ok(run(make))
    assert real['actions'] == predicted['actions']
    assert ok(run(make))['changed'] is False
    # an extra guest and volume, then the second example removes them
    ok(run(dict(volumes=[dict(pool=host, name='old1.qcow2', capacity='1MiB')], guests=[dict(name=host + '-old1')])))
    removed = ok(run(remove))
    assert [(o['kind'], o['name'], o['changed']) for o in removed['objects']] == [
        ('guest', host + '-old1', True),
        ('volume', host + '/old1.qcow2', True),
    ]
    assert set(look(qemu, host)) == {
        'pool ' + host,
        'network %s-backend' % host,
        'volume %s/web1.qcow2' % host,
        'guest %s-web1' % host,
    }


@pytest.mark.ansible(inventory='localhost,', connection='local', host_pattern='localhost')
@pytest.mark.filterwarnings('ignore::DeprecationWarning')
@pytest.mark.filterwarnings('ignore:AnsibleCollectionFinder has already been configured')
def test_through_ansibles_executor_check_mode_changes_nothing(ansible_module, testdrv, uname, monkeypatch):
    """One ad-hoc task through Ansible's own executor (the test driver served by libvirtd):
    check mode predicts a network and a guest on it, and libvirt stays as it was."""
    monkeypatch.setenv('ANSIBLE_PYTHON_INTERPRETER', sys.executable)
    before = state(testdrv)
    args = dict(
        uri=TEST_URI,
        networks=[dict(name=uname, ip='198.51.100.1/28')],
        guests=[dict(name=uname, memory='64MiB', vcpus=1, interfaces=[dict(source=uname)])],
    )
    result = succeeded(task(ansible_module, 'objects', args, check=True))
    assert result['changed'] is True
    assert [(o['kind'], o['changed']) for o in result['objects']] == [('network', True), ('guest', True)]
    assert result['actions'] == ["network '%s' defined" % uname, "network '%s' started" % uname] + [
        "guest '%s' defined" % uname
    ]
    assert len(result['diff']) == 2
    assert state(testdrv) == before, 'check mode changed libvirt'
