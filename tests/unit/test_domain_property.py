# SPDX-License-Identifier: GPL-3.0-or-later
"""Property: every valid typed ``guest`` spec (generated, optional parts left out) builds a
schema-valid domain XML that the same spec then finds unchanged, and no spec crashes the
spec -> XML layer with anything but an InvalidParameter."""

import copy
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typed_specs import Resources, guest_args, module_params
from virtops_helpers import assert_valid

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import canonical_machine_from_caps
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.build import build_domain
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import TYPED_OPTIONS
from ansible_collections.virtops.libvirt.plugins.modules.guest import SPEC

RES = Resources()
CAPS = X.parse(
    """<capabilities><host><cpu><arch>x86_64</arch></cpu></host><guest><os_type>hvm</os_type>
    <arch name='x86_64'><machine>pc-i440fx-7.2</machine><machine canonical='pc-i440fx-7.2'>pc</machine>
    <machine>pc-q35-7.2</machine><machine canonical='pc-q35-7.2'>q35</machine><machine>pc-q35-5.2</machine>
    <domain type='qemu'/></arch></guest></capabilities>"""
)
PROPERTY = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def typed_spec(args):
    """What GuestManager._typed_spec hands to the XML layer: module params, the machine alias
    resolved (canonical_machine), a pool volume's format filled in (_resolve_disk)."""
    params = module_params(args, SPEC.argument_spec)
    spec = {key: copy.deepcopy(params.get(key)) for key in TYPED_OPTIONS}
    spec['name'] = params['name']
    if spec.get('machine'):
        canonical = canonical_machine_from_caps(CAPS, spec.get('arch'), spec.get('domain_type'), spec['machine'])
        if canonical != spec['machine']:
            spec['machine_alias'], spec['machine'] = spec['machine'], canonical
    formats = dict(RES.pool_volumes.values())
    for disk in spec.get('disks') or []:
        if disk.get('pool') and not disk.get('format'):
            disk['format'] = formats[disk['volume']]
    return spec


@PROPERTY
@given(guest_args(RES))
def test_built_xml_is_valid_and_idempotent(args):
    spec = typed_spec(args)
    root = build_domain(spec, 'qemu')
    assert_valid(X.tostring(root), 'domain')
    again = copy.deepcopy(root)
    assert D.apply_spec(again, typed_spec(args)) == []
    assert X.tostring(again) == X.tostring(root)


@PROPERTY
@given(guest_args(RES), guest_args(RES))
def test_apply_converges(first, second):
    """Applying a second spec onto the first's guest: schema-valid, and then unchanged (or an
    InvalidParameter when the two contradict, e.g. current_memory above the guest's memory)."""
    root = build_domain(typed_spec(first), 'qemu')
    try:
        changes = D.apply_spec(root, typed_spec(second))
    except InvalidParameter as exc:
        assert re.split(r'[.\[:]', str(exc))[0] in TYPED_OPTIONS, exc
        return
    assert all(isinstance(change, D.Change) and change.message for change in changes)
    assert_valid(X.tostring(root), 'domain')
    after = X.tostring(root)
    assert D.apply_spec(root, typed_spec(second)) == []
    assert X.tostring(root) == after


_ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.text(max_size=5), st.just({}), st.just([]))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(guest_args(RES), st.data())
def test_optional_parts_missing_never_crash(args, data):
    """Sub-options set to None or odd values (what a caller that bypasses the argspec could pass):
    either a result or InvalidParameter, never another exception."""
    spec = typed_spec(args)
    for kind in ('disks', 'interfaces'):
        for item in spec.get(kind) or []:
            for key in list(item):
                if key not in ('target', 'iotune') and data.draw(st.booleans()):
                    item[key] = data.draw(st.one_of(st.none(), st.just('')))
    try:
        root = build_domain(spec, 'qemu')
        D.apply_spec(root, spec)
    except InvalidParameter:
        pass


# ---------------------------------------------------------------------------------------------
# what the generated specs found, pinned as examples


def _built(**options):
    return build_domain(typed_spec(dict(options, name='prop-guest')), 'qemu')


def _apply(root, **options):
    return D.apply_spec(root, typed_spec(dict(options, name='prop-guest')))


def test_machine_alias_family():
    root = _built(machine='q35')
    assert root.find('os/type').get('machine') == 'pc-q35-7.2'
    root.find('os/type').set('machine', 'pc-q35-5.2')  # defined by an older QEMU
    assert _apply(root, machine='q35') == []
    assert [c.message for c in _apply(copy.deepcopy(root), machine='pc')] == ['machine -> pc-i440fx-7.2']
    assert [c.message for c in _apply(root, machine='pc-q35-7.2')] == ['machine -> pc-q35-7.2']
    assert D.same_machine({'machine': 'pc'}, 'pc-i440fx-6.2')  # unresolved x86 alias
    assert not D.same_machine({'machine': 'pc'}, 'pc-q35-7.2')


def test_empty_cdrom_insert_eject():
    empty = [dict(target='sda', bus='sata', device='cdrom')]
    root = _built(machine='q35', disks=empty)
    assert_valid(X.tostring(root), 'domain')
    assert root.find('devices/disk/source') is None and root.find('devices/disk/readonly') is not None
    media = [dict(empty[0], path='/x.iso')]
    assert [c.message for c in _apply(root, disks=media)] == ['disk sda updated']
    assert root.find('devices/disk/source').get('file') == '/x.iso'
    assert _apply(root, disks=media) == []
    assert [c.message for c in _apply(root, disks=empty)] == ['disk sda updated']
    assert root.find('devices/disk/source') is None
    assert _apply(root, disks=empty) == []


def test_normalised_values_compare_equal():
    disk = dict(target='vda', path='/d.img', format='raw', cache='default', readonly=False)
    root = _built(disks=[disk, dict(target='sda', bus='sata', device='cdrom', readonly=False)])
    assert root.find('devices/disk/driver').get('cache') is None
    assert _apply(root, disks=[disk, dict(target='sda', bus='sata', device='cdrom', readonly=False)]) == []
    # readonly: false and cache: default do remove them from an existing disk
    node = root.find('devices/disk')
    node.find('driver').set('cache', 'none')
    X.sub(node, 'readonly')
    assert [c.message for c in _apply(root, disks=[disk, dict(target='sda', bus='sata', device='cdrom')])] == [
        'disk vda updated'
    ]
    vda = root.find('devices/disk')
    assert vda.find('target').get('dev') == 'vda'
    assert vda.find('driver').get('cache') is None and vda.find('readonly') is None


def test_video_none_without_video_and_custom_cpu_restated():
    root = _built()
    for node in root.findall('devices/video'):
        node.getparent().remove(node)
    X.sub(root, 'cpu', mode='custom', match='exact', check='none')
    X.sub(root.find('cpu'), 'model', 'qemu64', fallback='forbid')
    X.sub(root.find('cpu'), 'topology', sockets=1, dies=1, cores=1, threads=1)
    assert _apply(root, video='none', cpu=dict(mode='custom', model='qemu64')) == []
    changes = _apply(root, cpu=dict(mode='host-passthrough'))
    assert [c.message for c in changes] == ['cpu -> host-passthrough']
    assert root.find('cpu/topology') is not None  # not stated: kept


def test_boot_order_rules():
    root = _built(boot=dict(order=[]))
    root.find('os').append(X.element('boot', dev='hd'))  # what libvirt writes for "no order"
    assert _apply(root, boot=dict(order=[])) == []
    nic = dict(type='user', boot_order=1)
    _apply(root, interfaces=[nic])
    assert root.find('os/boot') is None  # per-device order replaces libvirt's default
    assert_valid(X.tostring(root), 'domain')
    for options, option in (
        (dict(boot=dict(order=['hd']), interfaces=[nic]), 'boot.order'),
        (dict(interfaces=[nic, dict(type='user', boot_order=1)]), 'interfaces[1].boot_order'),
    ):
        try:
            _built(**options)
        except InvalidParameter as exc:
            assert str(exc).startswith(option + ':'), exc
        else:
            raise AssertionError('accepted %r' % options)
    try:
        _apply(root, disks=[dict(target='vda', path='/d.img', boot_order=1)])
    except InvalidParameter as exc:
        assert str(exc).startswith('disks[0].boot_order:'), exc
    else:
        raise AssertionError('boot order 1 used twice')


def test_topology_must_match_max_vcpus():
    root = _built(vcpus=2, cpu=dict(topology=dict(sockets=2)))
    for options, option in ((dict(vcpus=1), 'vcpus'), (dict(cpu=dict(topology=dict(cores=4))), 'cpu.topology')):
        try:
            _apply(copy.deepcopy(root), **options)
        except InvalidParameter as exc:
            assert str(exc).startswith(option + ':'), exc
        else:
            raise AssertionError('accepted %r' % options)


def test_spice_devices_go_with_spice_graphics():
    root = _built(graphics='spice')
    X.sub(root.find('devices'), 'audio', id='1', type='spice')
    X.sub(root.find('devices'), 'channel', type='spicevmc')
    _apply(root, graphics='vnc')
    assert root.find('devices/audio') is None and root.find('devices/channel[@type="spicevmc"]') is None


def test_title_whitespace_kept():
    root = _built(title=' a ', description='x\n')
    assert _apply(root, title=' a ', description='x\n') == []
    assert [c.message for c in _apply(root, title='a')] == ['title updated']


def test_chipset_change_readdresses_devices():
    root = _built(machine='q35', disks=[dict(target='vda', path='/d.img')], interfaces=[dict(type='user')])
    devices = root.find('devices')
    X.sub(devices, 'controller', type='pci', index='0', model='pcie-root')
    for node in devices.findall('disk') + devices.findall('interface'):
        X.sub(node, 'address', type='pci', domain='0x0000', bus='0x01', slot='0x00', function='0x0')
    assert [c.message for c in _apply(root, machine='pc')] == ['machine -> pc-i440fx-7.2']
    assert root.find('devices/controller[@type="pci"]') is None
    assert not root.findall('devices/*/address')
    assert len(root.findall('devices/disk')) == 1 and len(root.findall('devices/interface')) == 1
    assert_valid(X.tostring(root), 'domain')
