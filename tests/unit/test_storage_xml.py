# SPDX-License-Identifier: GPL-3.0-or-later
"""Storage pool / volume spec -> XML, merge semantics, the shared marker, and schema validity of
everything generated (storagepool.rng / storagevol.rng)."""

import copy
import struct

import pytest
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_spec as P
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S

IQN = 'iqn.2024-01.com.example:storage.lun1'

# One full typed spec per pool type (these mirror the module's EXAMPLES and the integration tests).
SPECS = {
    'dir': dict(
        type='dir',
        target='/var/lib/libvirt/pools/images/',
        permissions=dict(mode='0711', owner='107', group='107', label='system_u:object_r:virt_image_t:s0'),
    ),
    'fs': dict(type='fs', target='/srv/pools/fast', source=dict(devices=['/dev/vdb'], format='ext4')),
    'netfs': dict(
        type='netfs',
        target='/mnt/nfs',
        source=dict(host='nfs.example.com', port=2049, dir='/exports/images', format='nfs'),
    ),
    'logical': dict(type='logical', source=dict(name='vg_guests', devices=['/dev/sdb', '/dev/sdc'], format='lvm2')),
    'disk': dict(type='disk', source=dict(devices=['/dev/vdc'], format='gpt')),
    'iscsi': dict(
        type='iscsi',
        source=dict(
            hosts=[dict(name='192.0.2.10', port=3260), dict(name='192.0.2.11')],
            devices=[IQN],
            initiator='iqn.2024-01.com.example:client1',
            auth=dict(type='chap', username='client1', secret_usage='san1'),
        ),
    ),
    'scsi': dict(
        type='scsi',
        source=dict(
            adapter=dict(
                type='fc_host', parent='scsi_host5', managed=True, wwnn='20000000C9831B4B', wwpn='0x10000000c9831b4b'
            )
        ),
    ),
    'mpath': dict(type='mpath'),
}


def spec(ptype, **kw):
    base = dict(name='p1', shared=None)
    base.update(copy.deepcopy(SPECS[ptype]))
    base.update(kw)
    return P.validate_pool_spec(base)


def build(ptype, **kw):
    return P.build_pool(spec(ptype, **kw))


@pytest.mark.parametrize('ptype', sorted(SPECS))
def test_every_typed_pool_builds_schema_valid_xml(ptype):
    root = build(ptype)
    assert_valid(X.tostring(root), 'storagepool')
    assert root.get('type') == ptype
    assert X.findtext(root, 'name') == 'p1'


def test_pool_details():
    root = build('dir')
    assert X.findtext(root, 'target/path') == '/var/lib/libvirt/pools/images'  # trailing slash dropped
    assert X.findtext(root, 'target/permissions/mode') == '0711'
    assert root.find('source') is None
    assert X.findtext(build('disk'), 'target/path') == '/dev'
    assert X.findtext(build('iscsi'), 'target/path') == '/dev/disk/by-path'
    assert X.findtext(build('mpath'), 'target/path') == '/dev/mapper'
    assert X.findtext(build('logical'), 'target/path') == '/dev/vg_guests'
    iscsi = build('iscsi')
    assert [(h.get('name'), h.get('port')) for h in iscsi.findall('source/host')] == [
        ('192.0.2.10', '3260'),
        ('192.0.2.11', None),
    ]
    assert iscsi.find('source/device').get('path') == IQN
    assert iscsi.find('source/initiator/iqn').get('name') == 'iqn.2024-01.com.example:client1'
    assert iscsi.find('source/auth/secret').get('usage') == 'san1'
    adapter = build('scsi').find('source/adapter')
    assert adapter.attrib == dict(
        type='fc_host', parent='scsi_host5', managed='yes', wwnn='20000000c9831b4b', wwpn='10000000c9831b4b'
    )
    scsi_host = P.build_pool(
        P.validate_pool_spec(dict(name='h', type='scsi', source=dict(adapter=dict(type='scsi_host', name='host0'))))
    )
    assert_valid(X.tostring(scsi_host), 'storagepool')
    assert scsi_host.find('source/adapter').attrib == dict(type='scsi_host', name='host0')
    cifs = P.build_pool(
        P.validate_pool_spec(
            dict(
                name='c',
                type='netfs',
                target='/mnt/c',
                source=dict(host='files.example.com', dir='share', format='cifs'),
            )
        )
    )
    assert_valid(X.tostring(cifs), 'storagepool')


@pytest.mark.parametrize(
    'ptype,kw,option',
    [
        ('dir', dict(type=None), 'type'),
        ('dir', dict(type='gluster'), 'type'),
        ('dir', dict(target='relative/path'), 'target'),
        ('dir', dict(source=dict(devices=['/dev/sdb'])), 'source.devices'),
        ('fs', dict(source=dict(format='ext4')), 'source.devices'),
        ('fs', dict(source=dict(devices=['/dev/a', '/dev/b'])), 'source.devices'),
        ('fs', dict(source=dict(devices=['/dev/vdb'], format='nfs')), 'source.format'),
        ('fs', dict(source=dict(devices=['vdb'])), 'source.devices[0]'),
        ('netfs', dict(source=dict(host='nfs', format='nfs')), 'source.dir'),
        ('netfs', dict(source=dict(dir='/x')), 'source.host'),
        ('netfs', dict(source=dict(host='nfs', dir='relative', format='nfs')), 'source.dir'),
        ('netfs', dict(source=dict(host='bad host!', dir='/x')), 'source.host'),
        ('netfs', dict(source=dict(host='a', hosts=[dict(name='b')], dir='/x')), 'source.host'),
        ('logical', dict(source=dict(format='lvm2')), 'source.name'),
        ('logical', dict(source=dict(name='bad/vg')), 'source.name'),
        ('iscsi', dict(source=dict(host='h', devices=['not-an-iqn'])), 'source.devices[0]'),
        ('iscsi', dict(source=dict(host='h', devices=[IQN], initiator='nope')), 'source.initiator'),
        ('iscsi', dict(source=dict(host='h', devices=[IQN], auth=dict(type='chap', username='u'))), 'source.auth'),
        (
            'iscsi',
            dict(source=dict(host='h', devices=[IQN], auth=dict(type='chap', username='u', secret_uuid='x'))),
            'source.auth.secret_uuid',
        ),
        (
            'scsi',
            dict(source=dict(adapter=dict(type='fc_host', wwnn='123', wwpn='10000000c9831b4b'))),
            'source.adapter.wwnn',
        ),
        ('scsi', dict(source=dict(adapter=dict(type='scsi_host'))), 'source.adapter.name'),
        (
            'scsi',
            dict(source=dict(adapter=dict(type='scsi_host', name='host0', wwnn='20000000c9831b4b'))),
            'source.adapter.wwnn',
        ),
        ('scsi', dict(source={}), 'source.adapter'),
    ],
)
def test_bad_pool_input_names_the_option(ptype, kw, option):
    base = dict(name='p1')
    base.update(copy.deepcopy(SPECS[ptype]))
    base.update(kw)
    with pytest.raises(InvalidParameter) as err:
        P.validate_pool_spec(base)
    assert err.value.msg.startswith(option + ':'), err.value.msg


def test_target_required_for_directory_types():
    with pytest.raises(InvalidParameter) as err:
        P.build_pool(P.validate_pool_spec(dict(name='p', type='dir')))
    assert err.value.msg.startswith('target:')


@pytest.mark.parametrize(
    'value,expected',
    [('0750', '0750'), ('750', '0750'), ('0o750', '0750'), (488, '0750'), ('2775', '2775'), (0, '0000')],
)
def test_mode_normalisation(value, expected):
    assert S.normalize_mode('permissions.mode', value) == expected


@pytest.mark.parametrize('value', ['rwx', '0789', '', True, 0o17777])
def test_bad_mode(value):
    with pytest.raises(InvalidParameter) as err:
        S.normalize_mode('permissions.mode', value)
    assert err.value.msg.startswith('permissions.mode:')


def test_permission_ids_and_names():
    perms = S.normalize_permissions(
        'permissions',
        dict(mode='0700', owner=107, group='kvm', label=None),
        user_resolver=lambda n: None,
        group_resolver=lambda n: 42 if n == 'kvm' else None,
    )
    assert perms == dict(mode='0700', owner='107', group='42', label=None)
    with pytest.raises(InvalidParameter) as err:
        S.normalize_permissions('permissions', dict(owner='nosuchuser'), user_resolver=lambda n: None)
    assert err.value.msg.startswith('permissions.owner:')
    assert S.normalize_permissions('permissions', dict(mode=None, owner=None, group=None, label=None)) is None


# ---------------------------------------------------------------------------------------------
# merge into an existing definition

# what libvirt returns for a running disk pool built from SPECS['disk'] (sizes, extents, uuid)
LIBVIRT_DISK = """<pool type='disk'>
  <name>p1</name>
  <uuid>feb4a6f2-0a43-40a8-b296-3721e2cdfd0d</uuid>
  <capacity unit='bytes'>67091968</capacity>
  <allocation unit='bytes'>0</allocation>
  <available unit='bytes'>67074560</available>
  <source>
    <device path='/dev/vdc'>
      <freeExtent start='17408' end='67091968'/>
    </device>
    <format type='gpt'/>
  </source>
  <target>
    <path>/dev</path>
  </target>
</pool>"""

LIBVIRT_DIR = """<pool type='dir'>
  <name>p1</name>
  <uuid>cd866a11-bb20-4096-b224-43b0d4e6e654</uuid>
  <capacity unit='bytes'>270553174016</capacity>
  <allocation unit='bytes'>23850487808</allocation>
  <available unit='bytes'>246702686208</available>
  <source>
  </source>
  <target>
    <path>/var/lib/libvirt/pools/images</path>
    <permissions>
      <mode>0711</mode>
      <owner>107</owner>
      <group>107</group>
      <label>system_u:object_r:virt_image_t:s0</label>
    </permissions>
  </target>
</pool>"""


def test_unchanged_spec_gives_no_changes():
    for text, ptype in ((LIBVIRT_DISK, 'disk'), (LIBVIRT_DIR, 'dir')):
        root = X.parse(text)
        before = X.tostring(root)
        assert P.apply_pool_spec(root, spec(ptype)) == []
        assert X.tostring(root) == before


def test_only_given_options_are_compared():
    root = X.parse(LIBVIRT_DIR)
    assert P.apply_pool_spec(root, P.validate_pool_spec(dict(name='p1', type='dir'))) == []
    assert (
        P.apply_pool_spec(root, P.validate_pool_spec(dict(name='p1', type='dir', permissions=dict(mode='0711')))) == []
    )


def test_target_and_permission_changes_need_a_restart():
    root = X.parse(LIBVIRT_DIR)
    new = spec('dir', target='/srv/other', permissions=dict(mode='0750'))
    changes = P.apply_pool_spec(root, new)
    assert [c.section for c in changes] == ['target', 'permissions']
    assert all(c.restart for c in changes)
    assert X.findtext(root, 'target/path') == '/srv/other'
    assert X.findtext(root, 'target/permissions/mode') == '0750'
    assert X.findtext(root, 'target/permissions/owner') == '107'  # untouched
    assert_valid(X.tostring(root), 'storagepool')
    assert P.apply_pool_spec(root, new) == []


def test_source_change_replaces_the_source_and_keeps_the_marker():
    root = X.parse(LIBVIRT_DISK)
    P.set_shared_marker(root, True)
    changes = P.apply_pool_spec(root, spec('disk', source=dict(devices=['/dev/vdd'], format='gpt')))
    assert [c.section for c in changes] == ['source'] and changes[0].restart
    assert [d.get('path') for d in root.findall('source/device')] == ['/dev/vdd']
    assert S.shared_override(root) is True
    assert_valid(X.tostring(root), 'storagepool')


def test_device_lists_must_match():
    current = P.build_pool(spec('logical'))
    fewer = spec('logical', source=dict(name='vg_guests', devices=['/dev/sdb'], format='lvm2'))
    changes = P.apply_pool_spec(current, fewer)
    assert [c.section for c in changes] == ['source']
    assert [d.get('path') for d in current.findall('source/device')] == ['/dev/sdb']


def test_type_cannot_change():
    root = X.parse(LIBVIRT_DIR)
    with pytest.raises(InvalidParameter) as err:
        P.apply_pool_spec(root, spec('fs'))
    assert err.value.msg.startswith('type:')


# ---------------------------------------------------------------------------------------------
# shared marker


@pytest.mark.parametrize('ptype', sorted(P.MARKER_POOL_TYPES))
def test_marker_round_trip_is_schema_valid(ptype):
    root = build(ptype)
    default = S.is_shared(root)
    assert default is (ptype not in S.LOCAL_POOL_TYPES)
    assert S.shared_override(root) is None
    assert P.set_shared_marker(root, not default) is True
    assert_valid(X.tostring(root), 'storagepool')
    assert S.is_shared(root) is (not default)
    assert P.set_shared_marker(root, not default) is False
    again = X.parse(X.tostring(root))
    assert S.shared_override(again) is (not default)
    assert P.set_shared_marker(again, default) is True
    assert S.shared_override(again) is default
    assert again.find('source/vendor').get('name') == 'virtops.libvirt'
    assert again.find('source/product').get('name') == ('shared' if default else 'local')


def test_marker_via_typed_spec_and_apply():
    root = build('dir', shared=True)
    assert_valid(X.tostring(root), 'storagepool')
    assert S.is_shared(root) is True
    changes = P.apply_pool_spec(root, spec('dir', shared=False))
    assert [(c.section, c.restart) for c in changes] == [('shared', False)]
    assert S.is_shared(root) is False


@pytest.mark.parametrize(
    'ptype,shared',
    [
        ('dir', False),
        ('fs', False),
        ('disk', False),
        ('logical', False),
        ('zfs', False),
        ('netfs', True),
        ('iscsi', True),
        ('scsi', True),
        ('mpath', True),
        ('rbd', True),
        ('gluster', True),
    ],
)
def test_default_shared_by_type(ptype, shared):
    assert S.default_shared(ptype) is shared
    assert S.is_shared(X.element('pool', type=ptype)) is shared


def test_marker_refused_where_it_cannot_live():
    with pytest.raises(InvalidParameter) as err:
        build('mpath', shared=False)
    assert err.value.msg.startswith('shared:')
    root = X.parse(
        "<pool type='scsi'><name>s</name><source><adapter type='scsi_host' name='host0'/>"
        "<vendor name='ACME'/><product name='SAN'/></source><target><path>/dev</path></target></pool>"
    )
    assert S.shared_override(root) is None
    with pytest.raises(InvalidParameter) as err:
        P.set_shared_marker(root, False)
    assert err.value.msg.startswith('shared:')


# ---------------------------------------------------------------------------------------------
# volumes


@pytest.mark.parametrize(
    'vspec',
    [
        dict(name='a.qcow2', capacity=10 * 1024**3, allocation=0, format='qcow2'),
        dict(
            name='b.raw',
            capacity=1024**3,
            allocation=1024**3,
            format='raw',
            permissions=dict(mode='0600', owner='107', group='107', label=None),
        ),
        dict(
            name='c.qcow2',
            capacity=0,
            allocation=0,
            format='qcow2',
            backing=dict(path='/var/lib/libvirt/images/base.raw', format='raw'),
        ),
        dict(name='loop0p1', capacity=8 * 1024**2, allocation=8 * 1024**2, format='linux'),
        dict(name='lv1', capacity=4 * 1024**2, allocation=None, format=None),
    ],
)
def test_volume_xml_is_schema_valid(vspec):
    root = S.build_volume(vspec)
    assert_valid(X.tostring(root), 'storagevol')
    summary = S.summarize_volume(root)
    assert summary['name'] == vspec['name']
    assert summary['capacity'] == vspec['capacity']
    assert summary['format'] == vspec['format']
    assert summary['backing'] == (vspec.get('backing'))


LIBVIRT_VOL = """<volume type='file'>
  <name>o.qcow2</name>
  <key>/pool/o.qcow2</key>
  <capacity unit='bytes'>3146240</capacity>
  <allocation unit='bytes'>200704</allocation>
  <physical unit='bytes'>196616</physical>
  <target>
    <path>/pool/o.qcow2</path>
    <format type='qcow2'/>
    <permissions><mode>0600</mode><owner>0</owner><group>0</group></permissions>
    <timestamps><atime>1795628578.502751153</atime><mtime>1795628578.500524046</mtime></timestamps>
  </target>
  <backingStore>
    <path>/pool/a.raw</path>
    <format type='raw'/>
  </backingStore>
</volume>"""


def test_summarize_and_diff_volume():
    assert_valid(LIBVIRT_VOL, 'storagevol')
    info = S.summarize_volume(X.parse(LIBVIRT_VOL))
    assert info == dict(
        encryption=None,
        name='o.qcow2',
        key='/pool/o.qcow2',
        path='/pool/o.qcow2',
        type='file',
        format='qcow2',
        capacity=3146240,
        allocation=200704,
        backing=dict(path='/pool/a.raw', format='raw'),
        permissions=dict(mode='0600', owner='0', group='0'),
    )
    shown = S.diff_xml(LIBVIRT_VOL)
    assert 'timestamps' not in shown and 'allocation' not in shown and '<capacity' in shown
    pool_shown = S.diff_xml(LIBVIRT_DISK)
    assert 'freeExtent' not in pool_shown and 'capacity' not in pool_shown


def _qcow2_header(size, backing_offset=0):
    return S.QCOW2_MAGIC + struct.pack('>IQIIQ', 3, backing_offset, 0, 16, size) + bytes(480)


def test_probe_image():
    assert S.probe_image(_qcow2_header(10 * 1024**3)) == ('qcow2', 10 * 1024**3, False)
    assert S.probe_image(_qcow2_header(1024, backing_offset=0x200)) == ('qcow2', 1024, True)
    assert S.probe_image(b'\0' * 512) == ('raw', None, False)
    assert S.probe_image(b'QFI') == ('raw', None, False)


def test_checksum_parsing():
    digest = 'a' * 64
    assert S.parse_checksum('sha256:' + digest.upper()) == ('sha256', digest)
    assert S.parse_checksum('md5:' + 'b' * 32) == ('md5', 'b' * 32)
    assert S.parse_checksum(None) is None
    for bad in ('sha256', 'sha256:abc', 'crc32:deadbeef', 'sha256:' + 'z' * 64):
        with pytest.raises(InvalidParameter) as err:
            S.parse_checksum(bad)
        assert err.value.msg.startswith('checksum:')


def test_capacity_rounding():
    assert S.capacity_matches(1000000, 1000448, 'dir')  # qcow2 rounds up to 512 bytes
    assert not S.capacity_matches(1000000, 1001472, 'dir')
    assert not S.capacity_matches(1000449, 1000448, 'dir')  # bigger wish: grow
    assert S.capacity_matches(5000000, 5000192, 'disk')  # partition alignment
    assert S.capacity_matches(5 * 1024**2, 8 * 1024**2, 'logical')  # LVM extents
    with pytest.raises(InvalidParameter) as err:
        S.size_bytes('capacity', '10 parsecs')
    assert err.value.msg.startswith('capacity:')
    assert S.size_bytes('capacity', '1GiB') == 1024**3
    assert S.size_bytes('capacity', 4096) == 4096


def test_existing_pool_keeps_its_source_when_none_is_given():
    root = P.build_pool(spec('iscsi'))
    update = P.validate_pool_spec(dict(name='p1', type='iscsi', shared=False), creating=False)
    changes = P.apply_pool_spec(root, update)
    assert [c.section for c in changes] == ['shared']
    assert root.find('source/device').get('path') == IQN
    with pytest.raises(InvalidParameter) as err:
        P.validate_pool_spec(dict(name='p1', type='iscsi', source=dict(initiator=IQN)), creating=False)
    assert err.value.msg.startswith('source.hosts') or err.value.msg.startswith('source.host:')


LUKS_VOL = """<volume type='file'>
  <name>v.qcow2</name>
  <capacity unit='bytes'>16777216</capacity>
  <target>
    <path>/pool/v.qcow2</path>
    <format type='qcow2'/>
    <encryption format='luks'>
      <secret type='passphrase' uuid='0D8E1073-72C6-42AD-BA6B-06BA84DB80EF'/>
    </encryption>
  </target>
</volume>"""


def test_luks_volume_xml_built_and_read_back():
    uuid = '0d8e1073-72c6-42ad-ba6b-06ba84db80ef'
    spec = dict(name='v.qcow2', capacity=1 << 24, format='qcow2', encryption=dict(format='luks', secret_uuid=uuid))
    built = S.build_volume(spec)
    assert_valid(X.tostring(built), 'storagevol')
    assert S.volume_encryption(built) == dict(format='luks', secret_uuid=uuid)
    assert_valid(LUKS_VOL, 'storagevol')
    assert S.summarize_volume(X.parse(LUKS_VOL))['encryption'] == dict(format='luks', secret_uuid=uuid)
    # after a pool refresh libvirt may name no secret (its usage is not the volume's path)
    refreshed = X.parse(LUKS_VOL.replace("<secret type='passphrase' uuid='0D8E1073-72C6-42AD-BA6B-06BA84DB80EF'/>", ''))
    assert S.volume_encryption(refreshed) == dict(format='luks', secret_uuid=None)
    assert S.volume_encryption(X.parse(LIBVIRT_VOL)) is None
