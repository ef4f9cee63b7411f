# SPDX-License-Identifier: GPL-3.0-or-later
"""snapshot: option checks, age order and retention, and plans against an in-memory guest."""

from __future__ import annotations

import pytest
from virtops_helpers import converge_task

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import Connection
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot import manager as M
from ansible_collections.virtops.libvirt.plugins.module_utils._snapshot import spec as S

BASE = dict(
    guest='g1',
    name='s1',
    state='present',
    description=None,
    disk_only=None,
    memory=None,
    quiesce=None,
    prefix=None,
    keep_newest=None,
)


@pytest.mark.parametrize(
    'params, option',
    [
        (dict(name=None), 'name'),
        (dict(state='reverted', name=None), 'name'),
        (dict(state='absent', name=None), 'name'),
        (dict(name='a/b'), 'name'),
        (dict(guest='x"y'), 'guest'),
        (dict(keep_newest=2), 'keep_newest'),
        (dict(prefix='pre-', keep_newest=2), 'prefix'),  # s1 does not start with pre-
        (dict(name='pre-1', prefix='pre-'), 'prefix'),  # prefix without keep_newest
        (dict(name='pre-1', prefix='pre-', keep_newest=0), 'keep_newest'),
        (dict(state='absent', prefix='pre-', keep_newest=-1), 'keep_newest'),
        (dict(state='absent', prefix='pre-', name='pre-1'), 'prefix'),
        (dict(state='reverted', disk_only=True), 'disk_only'),
        (dict(state='absent', description='x'), 'description'),
        (dict(disk_only=True, memory=True), 'memory'),
        (dict(quiesce=True), 'quiesce'),
        (dict(quiesce=True, disk_only=False), 'quiesce'),
        (dict(description='a\x00b'), 'description'),
    ],
)
def test_bad_input_names_the_option(params, option):
    with pytest.raises(InvalidParameter) as err:
        S.validate(dict(BASE, **params))
    assert err.value.msg.startswith(option + ':'), err.value.msg


def _snap(name, created, parent=None, current=False, external=False):
    return dict(
        name=name,
        description=None,
        state='disk-snapshot' if external else 'running',
        parent=parent,
        creation_time=created,
        memory='no' if external else 'internal',
        external=external,
        disks=[],
        current=current,
    )


def test_same_second_snapshots_are_ordered_by_ancestry():
    snaps = [_snap('c', 10, 'b'), _snap('a', 10), _snap('b', 10, 'a'), _snap('old', 5)]
    assert [s['name'] for s in S.ordered(snaps)] == ['old', 'a', 'b', 'c']


def test_retention_prunes_the_oldest_of_the_prefix_only():
    snaps = [_snap('pre-1', 1), _snap('other', 2), _snap('pre-2', 3), _snap('pre-3', 4)]
    assert S.to_prune(snaps, 'pre-', 2) == ['pre-1']
    assert S.to_prune(snaps, 'pre-', 0) == ['pre-1', 'pre-2', 'pre-3']
    assert S.to_prune(snaps, 'pre-', 5) == []
    # the snapshot the task keeps present counts as the newest, whatever its age
    assert S.to_prune(snaps, 'pre-', 2, protect='pre-1') == ['pre-2']


def test_snapshot_xml_reads_back():
    text = S.with_description(S.build('s1', 'old'), 'new words')
    fields = S.parse(text)
    assert fields['name'] == 's1' and fields['description'] == 'new words'
    assert S.parse(S.with_description(text, ''))['description'] is None
    ext = S.parse(
        '<domainsnapshot><name>e</name><state>disk-snapshot</state><parent><name>s1</name></parent>'
        "<creationTime>7</creationTime><memory snapshot='no'/><disks><disk name='vda' snapshot='external'>"
        "<source file='/i/d.e'/></disk><disk name='vdb' snapshot='no'/></disks></domainsnapshot>",
        current=True,
    )
    assert ext['external'] and ext['parent'] == 's1' and ext['creation_time'] == 7 and ext['current']
    assert ext['disks'] == [
        dict(target='vda', snapshot='external', file='/i/d.e'),
        dict(target='vdb', snapshot='no', file=None),
    ]
    assert S.render([ext]) == 'e (external, disk-snapshot, current)\n'


# ---------------------------------------------------------------------------------------------
# plans against an in-memory guest


class FakeError(Exception):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code

    def get_error_code(self):
        return self.code


class FakeLibvirt:
    libvirtError = FakeError
    VIR_ERR_NO_DOMAIN = 42
    VIR_ERR_NO_DOMAIN_SNAPSHOT = 72
    VIR_DOMAIN_XML_INACTIVE = 2
    VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY = 16
    VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE = 64
    VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC = 128
    VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE = 1
    VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT = 2
    VIR_DOMAIN_SNAPSHOT_XML_SECURE = 1


class FakeSnap:
    def __init__(self, dom, name):
        self.dom, self.name = dom, name

    def getName(self):
        return self.name

    def getXMLDesc(self, flags=0):
        return self.dom.snaps[self.name]

    def isCurrent(self, flags=0):
        return self.dom.current == self.name

    def delete(self, flags=0):
        self.dom.calls.append('delete ' + self.name)
        del self.dom.snaps[self.name]
        if '/i/g1.' + self.name in self.dom.chain:
            self.dom.chain.remove('/i/g1.' + self.name)  # merged into the file below


class FakeDom:
    def __init__(self, fmt='qcow2', running=True):
        self.fmt, self.running = fmt, running
        self.snaps, self.current, self.calls, self.clock = {}, None, [], 100
        self.chain = ['/i/g1.%s' % fmt]  # the disk's files, top first
        self.channel = "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"

    def state(self, flags=0):
        return [1 if self.running else 5, 0]

    def isActive(self):
        return self.running

    def XMLDesc(self, flags=0):
        backing = ''.join("<backingStore><source file='%s'/>" % path for path in self.chain[1:])
        return (
            "<domain><devices><disk device='disk'><driver type='%s'/><source file='%s'/>%s"
            "<target dev='vda'/></disk>%s</devices></domain>"
            % (self.fmt, self.chain[0], backing + '</backingStore>' * (len(self.chain) - 1), self.channel)
        )

    def listAllSnapshots(self, flags=0):
        return [FakeSnap(self, name) for name in self.snaps]

    def snapshotLookupByName(self, name, flags=0):
        if name not in self.snaps:
            raise FakeError(72, 'no snapshot')
        return FakeSnap(self, name)

    def add(self, name, external=False, description=None):
        self.clock += 1
        if external:
            self.chain.insert(0, '/i/g1.%s' % name)
        kind = "<memory snapshot='no'/><disks><disk name='vda' snapshot='external'><source file='/i/g1.%s'/>" % name
        self.snaps[name] = (
            '<domainsnapshot><name>%s</name>%s<state>%s</state>%s<creationTime>%d</creationTime>%s</domainsnapshot>'
            % (
                name,
                '<description>%s</description>' % description if description else '',
                'disk-snapshot' if external else 'running',
                '<parent><name>%s</name></parent>' % self.current if self.current else '',
                self.clock,
                kind + '</disk></disks>' if external else "<memory snapshot='internal'/>",
            )
        )
        self.current = name

    def snapshotCreateXML(self, xml, flags=0):
        self.calls.append('create %d' % flags)
        fields = S.parse(xml)
        if flags & FakeLibvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE:
            self.snaps[fields['name']] = xml
        else:
            external = bool(flags & FakeLibvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)
            self.add(fields['name'], external=external, description=fields['description'])


class FakeConn:
    def __init__(self, dom, version=9000000):
        self.dom, self.version = dom, version

    def lookupByName(self, name):
        if name != 'g1':
            raise FakeError(42, 'no domain')
        return self.dom

    def getLibVersion(self):
        return self.version


class Client(Connection):
    def __init__(self, conn, params, check_mode=False):
        super().__init__(FakeLibvirt, 'qemu:///system', conn=conn)
        self.params = dict(BASE, **params)
        self.check_mode = check_mode
        self.diff_mode = True

    def warn(self, msg):
        raise AssertionError(msg)


def run(conn, check=False, **params):
    return M.SnapshotManager(Client(conn, params, check_mode=check)).run()


def converge(conn, **params):
    """The idempotency contract every state test checks (``converge_task``), in process: check mode
    predicts and changes no snapshot, the run does what it predicted, the re-run is idle."""

    def in_process(_module, args, check=False):
        return dict(run(conn, check=check, **args), _rc=0)  # a failure raises here

    def agree(predicted, real):
        assert real['removed'] == predicted['removed']

    return converge_task('snapshot', params, lambda: dict(conn.dom.snaps), run=in_process, agree=agree)


def test_create_describe_and_remove_converge():
    conn = FakeConn(FakeDom())
    real = converge(conn, name='s1', description='first')
    assert real['snapshot']['name'] == 's1' and real['snapshot']['current'] is True
    assert conn.dom.calls == ['create 0'] and 'first' in conn.dom.snaps['s1']
    real = converge(conn, name='s1', description='second')
    assert real['actions'] == ["snapshot 's1' of guest 'g1' description changed"]
    assert conn.dom.calls[-1] == 'create %d' % (1 | 2)  # REDEFINE, kept current
    converge(conn, name='s1', state='absent')
    assert conn.dom.snaps == {}


def test_disk_only_create_is_atomic_and_retention_removes_the_oldest():
    conn = FakeConn(FakeDom(fmt='raw'))
    for name in ('pre-1', 'pre-2'):
        converge(conn, name=name, disk_only=True, prefix='pre-', keep_newest=2)
    real = converge(conn, name='pre-3', disk_only=True, prefix='pre-', keep_newest=2)
    assert real['removed'] == ['pre-1'] and sorted(conn.dom.snaps) == ['pre-2', 'pre-3']
    assert real['actions'][-1].endswith('removed (merged into its backing file)')
    assert conn.dom.calls[0] == 'create %d' % (16 | 128)


def test_what_libvirt_cannot_do_is_refused_before_any_change():
    conn = FakeConn(FakeDom(fmt='raw'))
    for check in (True, False):
        with pytest.raises(InvalidParameter, match=r'^disk_only: .*vda is raw'):
            run(conn, check=check, name='s1')
        with pytest.raises(InvalidParameter, match=r'^memory: '):
            run(conn, check=check, name='s1', disk_only=False, memory=False)
    conn.dom.add('ext', external=True)
    with pytest.raises(OperationFailed, match=r'libvirt 9.9 or later, this host runs 9.0.0; nothing was changed'):
        run(conn, name='ext', state='reverted')
    # the guest runs on another disk chain than the overlay (reverted since): no merge possible
    conn.dom.snaps['ext'] = conn.dom.snaps['ext'].replace('/i/g1.ext', '/i/elsewhere')
    with pytest.raises(OperationFailed, match=r'no longer in the disk chain of vda'):
        run(conn, check=True, name='ext', state='absent')
    old = FakeConn(conn.dom, version=8010000)
    with pytest.raises(OperationFailed, match=r'needs libvirt 9.0 or later, this host runs 8.10.0'):
        run(old, name='ext', state='absent')
    assert conn.dom.calls == []


def test_quiesce_needs_an_agent_that_answers(monkeypatch):
    conn = FakeConn(FakeDom())
    monkeypatch.setattr(M.Agent, 'ping', lambda self, timeout=2: False)
    for check in (True, False):
        with pytest.raises(OperationFailed, match=r"^quiesce: the guest agent of guest 'g1' does not answer"):
            run(conn, check=check, name='q', disk_only=True, quiesce=True)
    monkeypatch.setattr(M.Agent, 'ping', lambda self, timeout=2: True)
    # without the agent channel there is nothing to ask: said so, not "does not answer"
    channel, conn.dom.channel = conn.dom.channel, ''
    for check in (True, False):
        with pytest.raises(InvalidParameter, match=r"^quiesce: guest 'g1' has no guest agent channel"):
            run(conn, check=check, name='q', disk_only=True, quiesce=True)
    conn.dom.channel = channel
    converge(conn, name='q', disk_only=True, quiesce=True)
    assert conn.dom.calls == ['create %d' % (16 | 64 | 128)]


def test_revert_is_an_action_made_every_time():
    conn = FakeConn(FakeDom())
    conn.dom.add('s1')
    conn.dom.add('s2')
    reverted = []
    conn.dom.revertToSnapshot = lambda snap, flags: reverted.append(snap.name)
    for _run in range(2):
        result = run(conn, name='s1', state='reverted')
        assert result['changed'] and result['snapshot']['name'] == 's1'
    assert reverted == ['s1', 's1']
    with pytest.raises(InvalidParameter, match=r"^name: guest 'g1' has no snapshot 'nope'"):
        run(conn, name='nope', state='reverted')
    assert X.parse(conn.dom.snaps['s2']).findtext('parent/name') == 's1'


def test_a_failed_snapshot_names_a_full_file_system_of_its_disks():
    def disk(target, path, **extra):
        entry = dict(target=target, type='file', path=path, readonly=False, top=True)
        entry.update(extra)
        return entry

    disks = [
        disk('vda', '/full/a.qcow2'),
        disk('vdb', '/full/b.qcow2'),  # same directory: named once
        disk('vdc', '/roomy/c.qcow2'),
        disk('vdd', '/full2/base.img', top=False),  # a backing file is not written
        disk('sda', '/full3/cd.iso', readonly=True),
        disk('vde', None, type='network'),
    ]
    free = {'/full': 0, '/roomy': 10 * 1024**3, '/full2': 0, '/full3': 0}
    hint = S.space_hint(disks, free.get)
    assert hint == '; the file system of /full (disk vda) has 0 B free: free space there, then run the task again'
    assert S.space_hint(disks[2:], free.get) == ''
    assert S.space_hint([disk('vda', '/gone/a.qcow2')], lambda directory: None) == ''
