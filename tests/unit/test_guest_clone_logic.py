# SPDX-License-Identifier: GPL-3.0-or-later
"""guest ``clone_from``: the plan, check mode and the undo of every step, driven through the real
``LibvirtClient``, ``GuestManager`` and the shared runner against libvirt's in-process test driver
(test:///default: real storage pools, volumes and guests), with a failure injected into each
libvirt call that makes something. The rule: a clone that cannot be finished leaves no volume and
no guest behind, reports no change and says what happened."""

from __future__ import annotations

import itertools
import types

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import LibvirtClient
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import (
    InvalidParameter,
    OperationFailed,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import GuestManager
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.options import SPEC

libvirt.registerErrorHandler(lambda ctx, err: None, None)

POOL = 'default-pool'
_COUNTER = itertools.count()

SOURCE = """<domain type='test'>
  <name>%(name)s</name>
  <uuid>11111111-2222-3333-4444-%(n)012d</uuid>
  <memory unit='KiB'>262144</memory>
  <os><type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>
    <nvram>/default-pool/%(name)s_VARS.fd</nvram></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='/default-pool/%(name)s-a.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='volume' device='disk'><driver name='qemu' type='raw'/>
      <source pool='default-pool' volume='%(name)s-b.img'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='/default-pool/shared.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <disk type='volume' device='cdrom'><driver name='qemu' type='raw'/>
      <source pool='default-pool' volume='%(name)s-cidata.iso'/><target dev='hdd' bus='ide'/><readonly/></disk>
    <interface type='network'><mac address='52:54:00:11:22:33'/><source network='default'/></interface>
    <interface type='network'><mac address='52:54:00:11:22:34'/><source network='default'/></interface>
  </devices>
</domain>"""


@pytest.fixture
def conn():
    conn = libvirt.open('test:///default')
    yield conn
    conn.close()


def _vol(pool, name, fmt, capacity=1024 * 1024):
    xml = "<volume><name>%s</name><capacity>%d</capacity><target><format type='%s'/></target></volume>"
    return pool.createXML(xml % (name, capacity, fmt), 0)


@pytest.fixture
def source(conn):
    """A stopped guest with a qcow2 and a raw disk volume, a shared ISO, a cloud-init seed, an
    NVRAM file (a volume here) and two NICs; yields its name and the clone's."""
    n = next(_COUNTER)
    name = 'vt-h12-src%d' % n
    pool = conn.storagePoolLookupByName(POOL)
    for vol, fmt in (('-a.qcow2', 'qcow2'), ('-b.img', 'raw'), ('-cidata.iso', 'raw'), ('_VARS.fd', 'raw')):
        _vol(pool, name + vol, fmt)
    if 'shared.iso' not in pool.listVolumes():
        _vol(pool, 'shared.iso', 'raw')
    conn.defineXML(SOURCE % dict(name=name, n=n))
    yield name, 'vt-h12-clone%d' % n
    pool.refresh(0)
    for vol in pool.listAllVolumes(0):
        if vol.name().startswith('vt-h12-'):
            vol.delete(0)
    for dom in conn.listAllDomains(0):
        if dom.name().startswith('vt-h12-'):
            dom.undefine()


def manager(conn, check=False, **params):
    values = {key: spec.get('default') for key, spec in SPEC.argument_spec.items()}
    values.update(uri='test:///default', username=None, password=None)
    values.update(params)
    module = types.SimpleNamespace(params=values, check_mode=check, _diff=True, warn=lambda msg: None)
    client = LibvirtClient(module)
    client._conn = conn
    return GuestManager(client)


def clone_args(src, clone, mode='full', **extra):
    return dict(dict(name=clone, clone_from=dict(guest=src, mode=mode, pool=None)), **extra)


def made(conn, clone):
    """What exists of the clone: its volumes (sorted) and whether the guest is defined."""
    pool = conn.storagePoolLookupByName(POOL)
    pool.refresh(0)
    names = sorted(v for v in pool.listVolumes() if v.startswith(clone))
    return names, clone in [d.name() for d in conn.listAllDomains(0)]


@pytest.mark.parametrize('mode', ['full', 'linked'])
def test_check_mode_predicts_the_run_exactly_and_the_rerun_does_nothing(conn, source, mode):
    src, clone = source
    predicted = manager(conn, check=True, **clone_args(src, clone, mode)).run()
    assert made(conn, clone) == ([], False)
    real = manager(conn, **clone_args(src, clone, mode)).run()
    assert predicted['changed'] and real['changed']
    assert predicted['actions'] == real['actions']
    fmt = 'qcow2' if mode == 'linked' else 'img'
    volumes = ['%s-vda.qcow2' % clone, '%s-vdb.%s' % (clone, fmt), '%s_VARS.fd' % clone]
    assert made(conn, clone) == (sorted(volumes), True)
    assert real['clone'] == dict(
        source=src, mode=mode, volumes=['%s/%s' % (POOL, v) for v in volumes[:2]], nvram='/default-pool/' + volumes[2]
    )
    # the diff says what a create-by-clone makes: the volumes, then the new guest
    assert "<!-- clone of guest '%s' (%s) -->" % (src, mode) in real['diff']['after']
    assert real['diff']['before'] == ''
    again = manager(conn, **clone_args(src, clone, mode)).run()
    assert again['changed'] is False and 'clone' not in again
    assert manager(conn, check=True, **clone_args(src, clone, mode)).run()['changed'] is False


def test_the_clone_gets_its_own_identity_and_shares_only_read_only_media(conn, source):
    src, clone = source
    manager(conn, **clone_args(src, clone, 'linked')).run()
    root = X.parse(conn.lookupByName(clone).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert X.findtext(root, 'uuid') != '11111111-2222-3333-4444-%012d' % int(src[len('vt-h12-src') :])
    macs = [node.get('address') for node in root.findall('devices/interface/mac')]
    assert len(macs) == 2 and not {'52:54:00:11:22:33', '52:54:00:11:22:34'} & set(macs)
    sources = {d.find('target').get('dev'): d.find('source').attrib for d in root.findall('devices/disk')}
    # the source's seed CD-ROM (hdd) is gone, the shared ISO kept, the disks are the new volumes
    assert sorted(sources) == ['hdc', 'vda', 'vdb']
    assert sources['hdc'] == {'file': '/default-pool/shared.iso'}
    assert sources['vda'] == {'pool': POOL, 'volume': clone + '-vda.qcow2'}
    assert X.findtext(root, 'os/nvram') == '/default-pool/%s_VARS.fd' % clone
    overlay = X.parse(conn.storagePoolLookupByName(POOL).storageVolLookupByName(clone + '-vdb.qcow2').XMLDesc(0))
    assert X.findtext(overlay, 'backingStore/path') == '/default-pool/%s-b.img' % src
    # the source keeps its own
    have = X.parse(conn.lookupByName(src).XMLDesc(0))
    assert [n.get('address') for n in have.findall('devices/interface/mac')] == [
        '52:54:00:11:22:33',
        '52:54:00:11:22:34',
    ]
    assert len(have.findall('devices/disk')) == 4


def test_options_of_the_task_apply_on_top_of_the_cloned_definition(conn, source):
    src, clone = source
    result = manager(conn, **clone_args(src, clone, memory='128MiB', vcpus=2, title='from a template')).run()
    root = X.parse(result['guest']['xml'])
    assert X.findtext(root, 'memory') == '131072' and X.findtext(root, 'vcpu') == '2'
    assert X.findtext(root, 'title') == 'from a template'


def test_an_existing_guest_does_not_use_clone_from_again(conn, source):
    src, clone = source
    manager(conn, **clone_args(src, clone)).run()
    conn.lookupByName(src).undefine()  # even a source gone does not matter any more
    result = manager(conn, **clone_args(src, clone, memory='128MiB')).run()
    assert result['actions'] == ['memory 262144 KiB -> 131072 KiB', 'current memory 262144 KiB -> 131072 KiB']
    assert 'clone' not in result


class Inject:
    """Make the ``fail_at``-th libvirt call that creates something (a volume, a copy, the define)
    raise; ``after=True``: the call is made first (a copy cut short after libvirt created it)."""

    def __init__(self, monkeypatch, fail_at, after=False):
        self.count = 0
        self.calls = []
        for cls, method in (
            (libvirt.virStoragePool, 'createXML'),
            (libvirt.virStoragePool, 'createXMLFrom'),
            (libvirt.virConnect, 'defineXML'),
        ):
            monkeypatch.setattr(cls, method, self.wrap(getattr(cls, method), method, fail_at, after))

    def wrap(self, real, method, fail_at, after):
        def call(obj, *args):
            self.count += 1
            self.calls.append(method)
            if self.count == fail_at:
                if after:
                    real(obj, *args)
                exc = libvirt.libvirtError('%s: injected failure' % method)
                exc.err = (
                    libvirt.VIR_ERR_OPERATION_FAILED,
                    libvirt.VIR_FROM_STORAGE,
                    str(exc),
                    2,
                    None,
                    None,
                    None,
                    0,
                    0,
                )
                raise exc
            return real(obj, *args)

        return call


# (a define libvirt made but answered with an error is a guest another run defined: the runner
# converges on it, see guest's define(); so the define fails only "refused" here)
@pytest.mark.parametrize('mode', ['full', 'linked'])
@pytest.mark.parametrize(
    ('fail_at', 'after'),
    [(1, False), (2, False), (3, False), (4, False), (1, True), (2, True), (3, True)],
    ids=['vda', 'vdb', 'nvram', 'define', 'vda-cut-short', 'vdb-cut-short', 'nvram-cut-short'],
)
def test_a_failure_at_any_step_leaves_nothing_behind(conn, source, monkeypatch, mode, after, fail_at):
    src, clone = source
    inject = Inject(monkeypatch, fail_at, after)
    mgr = manager(conn, **clone_args(src, clone, mode))
    with pytest.raises(OperationFailed) as failure:
        mgr.run()
    assert 'injected failure' in failure.value.msg
    assert "guest '%s' was not cloned" % clone in failure.value.msg or 'was not kept' in failure.value.msg
    monkeypatch.undo()
    assert made(conn, clone) == ([], False)
    assert mgr.result.actions == [] and mgr.result.changed is False
    # steps: disk vda, disk vdb, the NVRAM copy, the define; nothing after the failing one
    volume_call = 'createXMLFrom' if mode == 'full' else 'createXML'
    assert inject.calls == [volume_call, volume_call, 'createXMLFrom', 'defineXML'][:fail_at]
    # the source is untouched and a run without failure then makes the clone
    assert manager(conn, **clone_args(src, clone, mode)).run()['changed'] is True


def test_a_running_source_is_refused_naming_the_option(conn):
    mgr = manager(conn, **clone_args('test', 'vt-h12-of-running'))  # the test driver's guest runs
    with pytest.raises(InvalidParameter, match=r"^clone_from.guest: guest 'test' is running"):
        mgr.run()
    assert made(conn, 'vt-h12-of-running') == ([], False)


def test_a_missing_source_is_refused_naming_the_option(conn):
    with pytest.raises(InvalidParameter, match=r"^clone_from.guest: guest 'vt-h12-nothing' does not exist"):
        manager(conn, check=True, **clone_args('vt-h12-nothing', 'vt-h12-x')).run()


def test_a_disk_that_is_no_volume_is_refused(conn, source):
    src, clone = source
    dom = conn.lookupByName(src)
    xml = dom.XMLDesc(0).replace('/default-pool/%s-a.qcow2' % src, '/elsewhere/disk.qcow2')
    conn.defineXML(xml)
    with pytest.raises(InvalidParameter, match=r'^clone_from.guest: disk vda .* not a storage volume'):
        manager(conn, **clone_args(src, clone)).run()
    assert made(conn, clone) == ([], False)


def test_a_volume_the_clone_would_take_is_refused_before_anything_is_made(conn, source):
    src, clone = source
    _vol(conn.storagePoolLookupByName(POOL), clone + '-vdb.img', 'raw')
    with pytest.raises(
        InvalidParameter, match=r"^clone_from: volume '%s/%s-vdb.img' .* exists already" % (POOL, clone)
    ):
        manager(conn, **clone_args(src, clone)).run()
    assert made(conn, clone) == ([clone + '-vdb.img'], False)


def test_clone_from_is_exclusive_with_xml_and_disks():
    pairs = {tuple(sorted(p)) for p in SPEC.mutually_exclusive}
    assert ('clone_from', 'xml') in pairs and ('clone_from', 'disks') in pairs


def test_the_objects_module_and_so_the_kvm_guest_role_clone_too(conn, source, capsys):
    """kvm_guest passes a guest's clone_from to its one ``objects`` task: an entry is validated
    with guest's own options and cloned as guest would; the re-run changes nothing."""
    import json

    from ansible.module_utils.testing import patch_module_args

    from ansible_collections.virtops.libvirt.plugins.module_utils._bulk.manager import ObjectsManager
    from ansible_collections.virtops.libvirt.plugins.module_utils._core import connection
    from ansible_collections.virtops.libvirt.plugins.modules.objects import SPEC as OBJECTS

    src, clone = source

    def run(check=False):
        args = dict(
            uri='test:///default',
            guests=[dict(name=clone, clone_from=dict(guest=src, mode='linked'), memory='128MiB')],
            _ansible_check_mode=check,
            _ansible_diff=True,
        )
        with patch_module_args(args), pytest.raises(SystemExit):
            connection.run_module(OBJECTS, ObjectsManager)
        return json.loads(capsys.readouterr().out)

    predicted = run(check=True)
    assert made(conn, clone) == ([], False)
    real = run()
    assert not real.get('failed') and real['changed'] and real['actions'] == predicted['actions']
    overlay = "guest '%s': volume '%s/%s-vda.qcow2' created for disk vda: a qcow2 overlay backed by /%s/%s-a.qcow2"
    assert overlay % (clone, POOL, clone, POOL, src) in real['actions']
    assert made(conn, clone)[1] is True
    assert run()['changed'] is False


def test_per_disk_overrides_mix_linked_and_full_and_pools(conn, source):
    src, clone = source
    other = conn.storagePoolCreateXML(
        "<pool type='dir'><name>vt-h12-other</name><target><path>/vt-h12-other</path></target></pool>", 0
    )
    try:
        disks = [dict(target='vdb', mode='linked', pool='vt-h12-other')]
        result = manager(conn, name=clone, clone_from=dict(guest=src, mode='full', pool=None, disks=disks)).run()
        assert result['actions'][:2] == [
            "volume '%s/%s-vda.qcow2' created for disk vda: a full copy of %s/%s-a.qcow2" % (POOL, clone, POOL, src),
            "volume 'vt-h12-other/%s-vdb.qcow2' created for disk vdb: a qcow2 overlay backed by /%s/%s-b.img"
            % (clone, POOL, src),
        ]
        assert other.listVolumes() == [clone + '-vdb.qcow2']
    finally:
        for vol in other.listAllVolumes(0):
            vol.delete(0)
        other.destroy()


@pytest.mark.parametrize(
    ('disks', 'message'),
    [
        ([dict(target='vdz')], r"^clone_from.disks\[0\].target: guest '.*' has no disk vdz"),
        ([dict(target='hdc', mode='linked')], r'^clone_from.disks\[0\].target: disk hdc .* is shared by the clone'),
        ([dict(target='vda'), dict(target='vda')], r'^clone_from.disks\[1\].target: disk vda is given twice'),
        ([dict(target='vdb', pool='vt-h12-nopool')], r"^clone_from.disks\[0\].pool: storage pool 'vt-h12-nopool' does"),
    ],
    ids=['unknown-target', 'shared-disk', 'twice', 'missing-pool'],
)
def test_per_disk_overrides_are_checked_naming_the_entry(conn, source, disks, message):
    src, clone = source
    with pytest.raises(InvalidParameter, match=message):
        manager(conn, check=True, name=clone, clone_from=dict(guest=src, mode='full', pool=None, disks=disks)).run()
    assert made(conn, clone) == ([], False)
