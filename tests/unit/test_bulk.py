# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``objects`` module on libvirt's in-process test driver (``test:///default``, no daemon):
validation and planning before anything changes, the order, check mode on a host where nothing
exists yet, idempotency, the failure of one entry while applying, the managed marker and prune;
and the additions to the shared runner it is built on (``_core/plan.py``)."""

from __future__ import annotations

import json
import uuid

import libvirt
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtops.libvirt.plugins.module_utils._bulk import marker as M
from ansible_collections.virtops.libvirt.plugins.module_utils._bulk.manager import ObjectsManager
from ansible_collections.virtops.libvirt.plugins.module_utils._bulk.view import EntryClient, EntryError, validate
from ansible_collections.virtops.libvirt.plugins.module_utils._core import caps
from ansible_collections.virtops.libvirt.plugins.module_utils._core import connection as _connection
from ansible_collections.virtops.libvirt.plugins.module_utils._core import plan as plan_module
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as guest_apply
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import options as guest_options
from ansible_collections.virtops.libvirt.plugins.modules.objects import SPEC

URI = 'test:///default'


@pytest.fixture(scope='module', autouse=True)
def held():
    """The test driver keeps its state while a connection is open: one is, for the module."""
    conn = libvirt.open(URI)
    yield conn
    conn.close()


@pytest.fixture
def names():
    """A unique prefix; everything named with it is removed from the test driver afterwards."""
    prefix = 'bulk-%s-' % uuid.uuid4().hex[:6]
    yield prefix
    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(prefix):
                if pool.isActive():
                    for vol in pool.listAllVolumes(0):
                        vol.delete(0)
                    pool.destroy()
                pool.undefine()
        for net in conn.listAllNetworks(0):
            if net.name().startswith(prefix):
                if net.isActive():
                    net.destroy()
                net.undefine()
    finally:
        conn.close()


def run(capsys, check=False, diff=True, **args):
    args = dict(args, uri=URI, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        _connection.run_module(SPEC, ObjectsManager)
    out = json.loads(capsys.readouterr().out)
    out['_rc'] = exit_info.value.code
    return out


def host(p):
    """A pool with two volumes, an isolated network and two guests on them (test driver)."""
    guest = dict(domain_type='test', memory='64M', vcpus=1)
    return dict(
        pools=[dict(name=p + 'pool', type='dir', target='/bulk-%spool' % p)],
        networks=[dict(name=p + 'net', ip='198.51.100.1/28')],
        volumes=[dict(pool=p + 'pool', name='v%d' % i, capacity='16M', format='raw') for i in (1, 2)],
        guests=[
            dict(
                guest,
                name=p + 'g%d' % i,
                disks=[dict(target='vda', pool=p + 'pool', volume='v%d' % i)],
                interfaces=[dict(source=p + 'net')],
            )
            for i in (1, 2)
        ],
    )


def state(prefix):
    """What exists on the test driver under ``prefix``: names and definitions."""
    conn = libvirt.open(URI)
    try:
        found = {}
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                found['guest ' + dom.name()] = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(prefix):
                found['pool ' + pool.name()] = pool.XMLDesc(0)
                if pool.isActive():
                    for vol in pool.listAllVolumes(0):
                        found['volume %s/%s' % (pool.name(), vol.name())] = vol.XMLDesc(0)
        for net in conn.listAllNetworks(0):
            if net.name().startswith(prefix):
                found['network ' + net.name()] = net.XMLDesc(0)
        return found
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# the whole host


def test_check_mode_on_an_empty_host_predicts_every_object_and_changes_nothing(capsys, names):
    out = run(capsys, check=True, **host(names))
    assert out['_rc'] == 0, out['msg']
    assert out['changed'] is True
    assert [(o['kind'], o['name']) for o in out['objects']] == [
        ('pool', names + 'pool'),
        ('network', names + 'net'),
        ('volume', names + 'pool/v1'),
        ('volume', names + 'pool/v2'),
        ('guest', names + 'g1'),
        ('guest', names + 'g2'),
    ]
    assert all(o['changed'] and o['actions'] and not o['failed'] for o in out['objects'])
    # a volume in the new pool and guests on the new volumes and network: predicted
    assert "volume 'v1' in storage pool '%spool' created" % names in out['actions']
    assert "guest '%sg2' defined" % names in out['actions']
    assert len(out['diff']) == 6 and all(o['diff']['before'] == '' for o in out['objects'])
    assert state(names) == {}


def test_one_task_converges_the_host_and_the_rerun_changes_nothing(capsys, names):
    args = host(names)
    predicted = run(capsys, check=True, **args)
    real = run(capsys, **args)
    assert real['_rc'] == 0, real['msg']
    assert real['actions'] == predicted['actions']
    made = state(names)
    assert set(made) == {
        'pool %spool' % names,
        'network %snet' % names,
        'volume %spool/v1' % names,
        'volume %spool/v2' % names,
        'guest %sg1' % names,
        'guest %sg2' % names,
    }
    disk = X.parse(made['guest %sg1' % names]).find('devices/disk')
    assert disk.find('source').get('volume') == 'v1' and disk.find('driver').get('type') == 'raw'
    again = run(capsys, **args)
    assert again['changed'] is False and again['actions'] == [] and 'diff' not in again
    assert all(not o['changed'] for o in again['objects'])
    assert run(capsys, check=True, **args)['changed'] is False
    assert state(names) == made


def test_a_guest_says_when_it_must_reboot_to_see_a_change(capsys, names):
    args = host(names)
    for guest in args['guests']:
        guest['state'] = 'running'
    assert run(capsys, **args)['_rc'] == 0
    # more memory than the running guest has: the definition changes, the guest sees it at its next boot
    args['guests'][1]['memory'] = '128M'
    out = run(capsys, **args)
    assert out['_rc'] == 0, out['msg']
    by_name = {o['name']: o for o in out['objects']}
    assert by_name[names + 'g2']['changed'] and by_name[names + 'g2']['reboot_required'] is True
    assert not by_name[names + 'g1']['changed'] and 'reboot_required' not in by_name[names + 'g1']
    assert all('reboot_required' not in o for o in out['objects'] if o['kind'] != 'guest')


def test_removals_come_after_the_objects_made_and_in_reverse_order(capsys, names):
    args = host(names)
    assert run(capsys, **args)['_rc'] == 0
    gone = dict(
        pools=[dict(name=names + 'pool', state='absent')],
        networks=[dict(name=names + 'net', state='absent')],
        volumes=[dict(pool=names + 'pool', name='v%d' % i, state='absent') for i in (1, 2)],
        guests=[dict(name=names + 'g%d' % i, state='absent') for i in (1, 2)]
        + [dict(name=names + 'g3', domain_type='test', memory='64M')],
    )
    out = run(capsys, **gone)
    assert out['_rc'] == 0, out['msg']
    assert [(o['kind'], o['name']) for o in out['objects']] == [
        ('guest', names + 'g3'),
        ('guest', names + 'g1'),
        ('guest', names + 'g2'),
        ('volume', names + 'pool/v1'),
        ('volume', names + 'pool/v2'),
        ('network', names + 'net'),
        ('pool', names + 'pool'),
    ]
    assert set(state(names)) == {'guest %sg3' % names}


# ---------------------------------------------------------------------------------------------
# refusals before anything changes


def test_an_invalid_entry_fails_naming_it_and_nothing_changes(capsys, names):
    args = host(names)
    args['guests'].append(dict(name=names + 'g3', memory='64M', vcpus='many'))
    out = run(capsys, **args)
    assert out['_rc'] == 1 and out['changed'] is False
    assert out['msg'].startswith('guests[2] (%sg3): ' % names) and 'vcpus' in out['msg'], out['msg']
    assert state(names) == {}


def test_an_unknown_option_and_a_connection_option_in_an_entry_are_refused(capsys, names):
    out = run(capsys, networks=[dict(name=names + 'n', ip='198.51.100.1/28', uri='qemu:///system')])
    assert out['_rc'] == 1
    assert out['msg'].startswith('networks[0] (%sn): unsupported options: uri' % names), out['msg']
    # an entry that is no dictionary: ansible-core refuses it, naming the option
    out = run(capsys, guests=['not a dict'])
    assert out['_rc'] == 1 and "option 'guests'" in out['msg'], out['msg']


def test_a_refusal_while_planning_fails_naming_the_entry_and_nothing_changes(capsys, names):
    args = host(names)
    # a disk on a volume neither on the host nor made by the task: refused by the guest's plan
    args['guests'][1]['disks'][0]['volume'] = 'nowhere'
    out = run(capsys, **args)
    assert out['_rc'] == 1 and out['changed'] is False
    assert out['msg'] == (
        "guests[1] (%sg2): disks[0].volume: volume 'nowhere' not found in storage pool '%spool'" % (names, names)
    )
    assert state(names) == {}


def test_an_object_given_twice_is_refused(capsys, names):
    out = run(capsys, guests=[dict(name=names + 'g', memory='64M'), dict(name=names + 'g', state='absent')])
    assert out['_rc'] == 1
    assert out['msg'] == 'guests[1] (%sg): guest %sg is given twice in this task (also guests[0] (%sg))' % (
        names,
        names,
        names,
    )


def test_prune_needs_a_label(capsys):
    out = run(capsys, prune=True)
    assert out['_rc'] == 1 and 'label' in out['msg']


# ---------------------------------------------------------------------------------------------
# a failure while applying


def test_a_failure_while_applying_stops_there_and_reports_what_was_applied(capsys, names, monkeypatch):
    args = host(names)
    args['guests'].append(dict(name=names + 'g3', domain_type='test', memory='64M'))
    args['guests'].append(dict(name=names + 'g4', domain_type='test', memory='64M'))
    real_define = guest_apply.define

    def refuse_g3(client, name, *rest):
        if name == names + 'g3':
            raise OperationFailed("guest '%s': libvirt refused the definition" % name)
        return real_define(client, name, *rest)

    monkeypatch.setattr(guest_apply, 'define', refuse_g3)
    out = run(capsys, **args)
    assert out['_rc'] == 1 and out['changed'] is True
    by_name = {o['name']: o for o in out['objects']}
    assert by_name[names + 'g2']['changed'] and not by_name[names + 'g2']['failed']
    failed = by_name[names + 'g3']
    assert failed['failed'] is True and failed['changed'] is False and failed['actions'] == []
    assert 'libvirt refused the definition' in failed['msg']
    assert by_name[names + 'g4'] == dict(
        kind='guest', name=names + 'g4', changed=False, actions=[], failed=False, done=False
    )
    assert out['not_done'] == ['guests[3] (%sg4)' % names]
    assert out['msg'] == (
        "guests[2] (%sg3): guest '%sg3': libvirt refused the definition (not done: guests[3] (%sg4))"
        % (names, names, names)
    )
    made = state(names)
    assert 'guest %sg2' % names in made and 'guest %sg3' % names not in made and 'guest %sg4' % names not in made
    assert "guest '%sg2' defined" % names in out['actions']


# ---------------------------------------------------------------------------------------------
# the managed marker and prune


def _label(name):
    conn = libvirt.open(URI)
    try:
        return M.label_of(_Client(conn), conn.lookupByName(name))
    finally:
        conn.close()


class _Client:
    libvirt = libvirt

    def __init__(self, conn):
        self.conn = conn

    def is_error(self, exc, *codes):
        return exc.get_error_code() in [getattr(libvirt, code) for code in codes]


def test_guests_get_the_marker_and_prune_removes_only_their_label(capsys, names):
    guest = dict(domain_type='test', memory='64M')
    first = run(capsys, label='a', guests=[dict(guest, name=names + n) for n in ('a1', 'a2')])
    assert first['_rc'] == 0, first['msg']
    assert "guest '%sa1' marked managed (label a)" % names in first['actions']
    assert run(capsys, label='b', guests=[dict(guest, name=names + 'b1')])['_rc'] == 0
    assert run(capsys, guests=[dict(guest, name=names + 'plain')])['_rc'] == 0
    assert _label(names + 'a1') == 'a' and _label(names + 'b1') == 'b' and _label(names + 'plain') is None
    # the same task again: marked already, nothing to do
    assert run(capsys, label='a', guests=[dict(guest, name=names + n) for n in ('a1', 'a2')])['changed'] is False
    args = dict(label='a', prune=True, guests=[dict(guest, name=names + 'a1')])
    predicted = run(capsys, check=True, **args)
    assert predicted['actions'] == ["guest '%sa2' undefined" % names]
    assert [(o['name'], o['changed']) for o in predicted['objects']] == [(names + 'a1', False), (names + 'a2', True)]
    before = state(names)
    assert set(before) >= {'guest %s%s' % (names, n) for n in ('a1', 'a2', 'b1', 'plain')}
    out = run(capsys, **args)
    assert out['actions'] == ["guest '%sa2' undefined" % names]
    after = state(names)
    assert set(before) - set(after) == {'guest %sa2' % names}
    again = run(capsys, **args)
    assert again['changed'] is False, again['actions']


def test_a_guest_given_as_xml_carries_the_marker_in_its_xml(capsys, names):
    xml = "<domain type='test'><name>%sx</name><memory>65536</memory><os><type>hvm</type></os></domain>" % names
    out = run(capsys, label='a', guests=[dict(name=names + 'x', xml=xml)])
    assert out['_rc'] == 0, out['msg']
    assert out['actions'] == ["guest '%sx' defined" % names]
    assert _label(names + 'x') == 'a'
    assert run(capsys, label='a', guests=[dict(name=names + 'x', xml=xml)])['changed'] is False
    relabelled = run(capsys, label='b', guests=[dict(name=names + 'x', xml=xml)])
    assert relabelled['changed'] is True and _label(names + 'x') == 'b'


def test_stamp_xml_replaces_a_marker_and_keeps_other_metadata():
    text = (
        "<domain><name>x</name><metadata><other xmlns='urn:o'/>"
        "<m:managed xmlns:m='%s' label='old'/></metadata></domain>" % M.NAMESPACE
    )
    root = X.parse(M.stamp_xml(text, 'new'))
    assert M.label_in(root) == 'new'
    assert len(root.findall('metadata/' + M.TAG)) == 1
    assert root.find('metadata/{urn:o}other') is not None
    bare = X.parse(M.stamp_xml('<domain><name>x</name><uuid>u</uuid><memory>1</memory></domain>', 'l'))
    assert [child.tag for child in bare][:3] == ['name', 'uuid', 'metadata']
    assert M.stamp_xml('not xml <', 'l') == 'not xml <'


# ---------------------------------------------------------------------------------------------
# validation and the client view


def test_validate_completes_defaults_and_masks_no_log_values():
    hidden = []
    params = validate(guest_options.SPEC, dict(name='g'), hidden.extend)
    assert params['state'] == 'present' and params['shutdown_timeout'] == 120 and params['force'] is False
    spec = type(guest_options.SPEC)(dict(name=dict(type='str'), secret=dict(type='str', no_log=True)))
    validate(spec, dict(name='x', secret='s3cret'), hidden.extend)
    assert 's3cret' in hidden
    with pytest.raises(EntryError) as info:
        validate(guest_options.SPEC, dict(name='g', xml='<domain/>', memory=1), hidden.extend)
    assert 'mutually exclusive' in str(info.value)
    with pytest.raises(EntryError) as info:
        validate(guest_options.SPEC, dict(name='g', cpu='mode'), hidden.extend)
    assert str(info.value).startswith('cpu: must be a dictionary'), str(info.value)


class _Base:
    def __init__(self):
        self.calls = 0
        self.params = dict(uri=URI)

    def call(self, func, *args, what=None):
        self.calls += 1
        return '<capabilities><host><cpu><arch>x86_64</arch></cpu></host></capabilities>'


def test_views_share_the_connection_and_read_the_capabilities_once():
    base = _Base()
    one, two = EntryClient(base, dict(name='a')), EntryClient(base, dict(name='b'), {'pool': {'p': {}}})
    assert one.params == dict(name='a') and two.params == dict(name='b') and base.params == dict(uri=URI)
    assert one == two and hash(one) == hash(two) and one != EntryClient(_Base(), {})
    caps.capabilities(one)
    caps.capabilities(two)
    assert base.calls == 1
    one.flag = True  # what a manager sets on its client is the task client's
    assert base.flag is True and two.flag is True
    assert plan_module.to_be_made(two, 'pool', 'p') == {} and plan_module.to_be_made(one, 'pool', 'p') is None
    assert plan_module.to_be_made(base, 'pool', 'p') is None  # a single module's client


# ---------------------------------------------------------------------------------------------
# the runner's phases (_core/plan.py)


class _RunnerClient:
    libvirt = None

    def __init__(self, check_mode=False):
        self.params = {}
        self.check_mode = check_mode
        self.diff_mode = True


class _Kind(plan_module.Manager):
    def __init__(self, client):
        super().__init__(client)
        self.plans = 0
        self.done = []

    def plan(self):
        self.plans += 1
        plan = plan_module.Plan("thing 'x'")
        plan.add('made', self._make)
        return plan

    def _make(self, _client):
        self.done.append('made')


def test_finish_applies_the_plan_it_is_given_without_planning_again():
    kind = _Kind(_RunnerClient())
    kind.prepare()
    plan = kind.plan()
    result = kind.finish(plan)
    kind.cleanup()
    assert kind.plans == 1 and kind.done == ['made'] and result['actions'] == ['made']
    assert _Kind(_RunnerClient()).run()['actions'] == ['made']


def test_a_volume_in_an_inactive_pool_the_task_starts_is_planned_on_it(capsys, names, held):
    pool = held.storagePoolDefineXML(
        "<pool type='dir'><name>%spool</name><target><path>/bulk-%spool</path></target></pool>" % (names, names), 0
    )
    assert not pool.isActive()
    args = dict(
        pools=[dict(name=names + 'pool', type='dir', target='/bulk-%spool' % names)],
        volumes=[dict(pool=names + 'pool', name='v', capacity='1M', format='raw')],
    )
    predicted = run(capsys, check=True, **args)
    assert predicted['_rc'] == 0, predicted['msg']
    assert predicted['actions'] == [
        "storage pool '%spool' started" % names,
        "volume 'v' in storage pool '%spool' created" % names,
    ]
    assert not pool.isActive()
    real = run(capsys, **args)
    assert real['actions'] == predicted['actions']
    assert pool.isActive() and pool.storageVolLookupByName('v').info()[1] == 1024 * 1024
    # alone, the volume module's rule holds: an inactive pool is refused
    pool.destroy()
    out = run(capsys, volumes=args['volumes'])
    assert out['_rc'] == 1 and out['msg'].startswith('volumes[0] (%spool/v): ' % names)
    assert 'is not active' in out['msg']


def test_secrets_of_an_entry_are_masked_in_the_output(capsys, names):
    """A password in a volume's url (masked by the volume module) stays masked here too,
    in the message and in the invocation Ansible prints."""
    url = 'http://someone:s3cret-%s@127.0.0.1:9/image.raw' % names
    out = run(capsys, volumes=[dict(pool='default-pool', name=names + 'v', url=url)])
    assert out['_rc'] == 1 and out['msg'].startswith('volumes[0] (default-pool/%sv): ' % names), out['msg']
    text = json.dumps(out)
    assert 's3cret' not in text
    assert out['invocation']['module_args']['volumes'][0]['url'] != url


# ---------------------------------------------------------------------------------------------
# each pool and volume read once per plan (issue 17)


def _count_reads(monkeypatch):
    """Counts of the libvirt calls that read pools and volumes (by method name)."""
    counts = {}
    for cls, methods in (
        (libvirt.virStorageVol, ('XMLDesc', 'info')),
        (libvirt.virStoragePool, ('XMLDesc', 'isActive', 'refresh', 'storageVolLookupByName')),
        (libvirt.virConnect, ('storagePoolLookupByName', 'networkLookupByName')),
    ):
        for method in methods:
            real = getattr(cls, method)

            def counted(self, *args, _real=real, _key='%s.%s' % (cls.__name__, method)):
                counts[_key] = counts.get(_key, 0) + 1
                return _real(self, *args)

            monkeypatch.setattr(cls, method, counted)
    return counts


def test_a_rerun_reads_each_pool_and_volume_once(capsys, names, monkeypatch):
    p = names
    volumes = [dict(pool=p + 'pool', name='v%d' % i, capacity='16M', format='qcow2') for i in range(5)]
    guests = [
        dict(
            name=p + 'g%d' % i,
            domain_type='test',
            memory='64M',
            vcpus=1,
            disks=[dict(target='vda', pool=p + 'pool', volume='v%d' % i)],
            interfaces=[dict(source=p + 'net')],
        )
        for i in range(5)
    ]
    args = host(p)
    args.update(volumes=volumes, guests=guests)
    assert run(capsys, **args)['_rc'] == 0
    made = state(p)
    counts = _count_reads(monkeypatch)
    again = run(capsys, **args)
    assert again['_rc'] == 0 and again['changed'] is False
    assert all(not o['changed'] for o in again['objects'])
    # once per volume (its entry and its guest's disk share the read), once for the pool
    assert counts['virStorageVol.XMLDesc'] == 5
    assert counts['virStorageVol.info'] == 5
    assert counts['virStoragePool.storageVolLookupByName'] == 5
    assert counts['virConnect.storagePoolLookupByName'] == 1
    assert counts['virConnect.networkLookupByName'] == 1
    assert counts['virStoragePool.isActive'] == 1
    # the pool's XML: twice (the test driver refuses the INACTIVE flag once, then the current XML)
    assert counts['virStoragePool.XMLDesc'] == 2
    assert counts.get('virStoragePool.refresh', 0) == 0
    assert state(p) == made


def test_a_first_run_refreshes_the_pool_once_and_reads_afresh_while_applying(capsys, names, monkeypatch):
    p = names
    args = host(p)
    assert run(capsys, pools=args['pools'], networks=args['networks'])['_rc'] == 0
    counts = _count_reads(monkeypatch)
    out = run(capsys, **args)
    assert out['_rc'] == 0, out['msg']
    assert [o['changed'] for o in out['objects']] == [False, False, True, True, True, True]
    # the two missing volumes: the pool refreshed once while planning, not per volume
    assert counts['virStoragePool.refresh'] == 1
    made = state(p)
    assert {'volume %spool/v1' % p, 'guest %sg2' % p} <= set(made)
    # the guests planned again after the volumes were made see them (their format read back)
    disk = X.parse(made['guest %sg2' % p]).find('devices/disk')
    assert disk.find('driver').get('type') == 'raw'
    assert run(capsys, **args)['changed'] is False


def test_the_read_cache_passes_through_when_off(held):
    from ansible_collections.virtops.libvirt.plugins.module_utils._bulk.view import ReadCache

    reads = ReadCache()
    base = _connection.Connection(libvirt, URI)
    try:
        view = EntryClient(base, {}, None, reads)
        reads.reading(True)
        pool = view.lookup('pool', 'default-pool')
        assert pool is view.lookup('pool', 'default-pool')
        assert view.lookup('pool', 'no-such-pool') is None
        xml = pool.XMLDesc(0)
        assert pool.XMLDesc(0) == xml and len(reads.calls) == 1
        reads.reading(False)
        assert not reads.calls and view.lookup('pool', 'default-pool') is not pool
        assert pool.XMLDesc(0) == xml and not reads.calls  # off: passed on to libvirt
        assert pool.name() == 'default-pool'
    finally:
        base.close()
