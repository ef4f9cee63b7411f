# SPDX-License-Identifier: GPL-3.0-or-later
"""Invalid and hostile input, generated with hypothesis, across every module.

Each generated input is run as its own module process (virtops_helpers.run_module, as Ansible
would run it: a traceback shows up as one), a few at a time. Every input must end as a clean
``failed`` (no traceback, not ``changed``) whose message names the option, and the XML of every
domain, network, storage pool, volume and node device on the URIs must be byte-identical
before and after the whole run.

Targets: a private test driver (test+unix:///default served by a namespaced libvirtd) with a
baseline guest (running), network (active), pool (active) and volume, so that update paths are
exercised too; the QEMU driver of the namespaced hosts for what the test driver cannot do
(volume formats, uploads, migration). Generation is deterministic (``derandomize=True``, no
example database): symbolic placeholders (``@BG`` ...) stand for the session's object names
and URIs and are filled in at run time.
"""

from __future__ import annotations

import json
import string
import time

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from reliability_lib import FIGURES, dump_json, own, parallel, run_caught, snapshot, snapshot_diff
from virtops_helpers import PREFIX

MIN_INPUTS = 200
EXAMPLES = 110

ALNUM = string.ascii_lowercase + string.digits
safe_text = st.text(alphabet=ALNUM, min_size=0, max_size=6)
word = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=10)

# ---------------------------------------------------------------------------------------------
# hostile names

FRAGMENTS = [
    '/',
    '../',
    '\\',
    "'",
    '"',
    '<',
    '>',
    '&',
    '\n',
    '\r',
    '\t',
    '\x00',
    '\x01',
    '\x1b',
    '\x7f',
    '</name><evil/><name>',
    '&amp;',
    ']]>',
    '$(reboot)/',
]
LITERAL_NAMES = ['', ' ', '.', '..', '-rf', ' lead', 'trail ', 'x' * 201, '../../etc/passwd', '/etc/passwd', '..\\x']
hostile_name = st.one_of(
    st.builds(lambda a, frag, b: a + frag + b, safe_text, st.sampled_from(FRAGMENTS), safe_text),
    st.sampled_from(LITERAL_NAMES),
)

USB = dict(type='usb', vendor='046d', product='c52b')

# (module, uri, base args, option path that receives the value, accepted names in the message)
NAME_TARGETS = [
    ('guest', '@T', dict(domain_type='test'), 'name'),
    ('network', '@T', dict(), 'name'),
    ('storage_pool', '@T', dict(type='dir', target='/x'), 'name'),
    ('volume', '@T', dict(pool='@BP', capacity='1MiB'), 'name'),
    ('volume', '@T', dict(name='v.qcow2', capacity='1MiB'), 'pool'),
    ('volume', '@T', dict(pool='@BP', name='c.qcow2', clone_from=dict(pool='@BP')), 'clone_from.name'),
    ('volume', '@T', dict(pool='@BP', name='o.qcow2', backing=dict(pool='@BP')), 'backing.name'),
    ('guest_agent', '@T', dict(action='ping'), 'name'),
    ('hostdev', '@T', dict(address=USB), 'guest'),
    ('npiv_vhba', '@T', dict(persistent=False), 'name'),
    ('migrate', '@QA', dict(dest_uri='@QB'), 'name'),
    ('guest_info', '@T', dict(), 'name'),
    ('storage_pool_info', '@T', dict(), 'name'),
    ('hostdev_info', '@T', dict(), 'name'),
    ('network', '@T', dict(name='@NEW'), 'bridge'),
    ('guest', '@T', dict(name='@NEW', domain_type='test', disks=[dict(target='vda', volume='v')]), 'disks[0].pool'),
    ('guest', '@T', dict(name='@NEW', domain_type='test', interfaces=[dict(type='network')]), 'interfaces[0].source'),
]


def put(args, path, value):
    """args with ``value`` at a dotted/indexed option path (``disks[0].pool``), copying."""
    args = json.loads(json.dumps(args))
    node = args
    parts = path.replace('[', '.[').split('.')
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part.startswith('['):
            key = int(part[1:-1])
        else:
            key = part
        if last:
            node[key] = value
        else:
            if isinstance(key, int):
                node = node[key]
            else:
                nxt = parts[index + 1]
                node = node.setdefault(key, [dict()] if nxt.startswith('[') else {})
    return args


def case(category, module, uri, args, names):
    names = set(names)
    names.update(parent(name) for name in list(names) if '.' in name)
    return dict(category=category, module=module, uri=uri, args=args, names=sorted(names))


def leaf(path):
    return path.split('.')[-1].split('[')[0]


def parent(path):
    """The option that contains ``path`` (``dhcp.ranges[0]`` for ``dhcp.ranges[0].end``)."""
    return path.rsplit('.', 1)[0] if '.' in path else path


@st.composite
def name_cases(draw):
    module, uri, base, path = draw(st.sampled_from(NAME_TARGETS))
    value = draw(hostile_name)
    if path == 'bridge' and value.startswith('-'):
        value = '/' + value  # a leading dash is a valid Linux interface name (documented rule)
    return case('hostile name', module, uri, put(base, path, value), {path, leaf(path)})


# ---------------------------------------------------------------------------------------------
# wrong types

WRONG = {
    'int': ['abc', [1], {'a': 1}, '1.5.6', 'ten', '0x'],
    'bool': ['maybe', 2, [True], {'x': 1}, 'yes please', -1],
    'list': [{'a': 1}],
    'dict': ['not a dict', [1, 2], 5],
    'size': [{'a': 1}, [1], True, 'lots', '5 parsecs', '', 'NaN', '1e400', '1.5.5GiB'],
    'dictlist': [['vda'], [1, 2], 'vda'],
}
GUEST = dict(name='@BG')
AGENT = dict(name='@BG')
TYPE_TARGETS = [
    ('guest', '@T', GUEST, 'vcpus', 'int'),
    ('guest', '@T', GUEST, 'max_vcpus', 'int'),
    ('guest', '@T', GUEST, 'shutdown_timeout', 'int'),
    ('guest', '@T', GUEST, 'wait_timeout', 'int'),
    ('guest', '@T', GUEST, 'autostart', 'bool'),
    ('guest', '@T', GUEST, 'rng', 'bool'),
    ('guest', '@T', GUEST, 'guest_agent', 'bool'),
    ('guest', '@T', GUEST, 'force', 'bool'),
    ('guest', '@T', GUEST, 'cpu', 'dict'),
    ('guest', '@T', GUEST, 'boot', 'dict'),
    ('guest', '@T', GUEST, 'memory_backing', 'dict'),
    ('guest', '@T', GUEST, 'disks', 'dictlist'),
    ('guest', '@T', GUEST, 'interfaces', 'dictlist'),
    ('guest', '@T', GUEST, 'memory', 'size'),
    ('guest', '@T', GUEST, 'current_memory', 'size'),
    ('guest', '@T', GUEST, 'cpu.topology.sockets', 'int'),
    ('guest', '@T', dict(GUEST, disks=[dict(target='vda', path='/nonexistent/x.raw')]), 'disks[0].readonly', 'bool'),
    ('guest', '@T', dict(GUEST, boot=dict()), 'boot.menu', 'bool'),
    ('network', '@T', dict(name='@BN'), 'mtu', 'int'),
    ('network', '@T', dict(name='@BN', ip='198.51.100.1'), 'prefix', 'int'),
    ('network', '@T', dict(name='@BN'), 'autostart', 'bool'),
    ('network', '@T', dict(name='@BN'), 'dhcp', 'dict'),
    ('network', '@T', dict(name='@BN', dhcp=dict()), 'dhcp.ranges', 'dictlist'),
    ('storage_pool', '@T', dict(name='@BP'), 'autostart', 'bool'),
    ('storage_pool', '@T', dict(name='@BP'), 'build', 'bool'),
    ('storage_pool', '@T', dict(name='@BP'), 'shared', 'bool'),
    ('storage_pool', '@T', dict(name='@BP'), 'source', 'dict'),
    ('storage_pool', '@T', dict(name='@BP'), 'permissions', 'dict'),
    (
        'storage_pool',
        '@T',
        dict(name='@NEW', type='netfs', target='/mnt/x', source=dict(host='h', dir='/e')),
        'source.port',
        'int',
    ),
    ('volume', '@T', dict(pool='@BP', name='@BV'), 'capacity', 'size'),
    ('volume', '@T', dict(pool='@BP', name='new.qcow2', capacity='1MiB'), 'allocation', 'size'),
    ('volume', '@T', dict(pool='@BP', name='@BV'), 'allow_shrink', 'bool'),
    ('volume', '@T', dict(pool='@BP', name='@BV'), 'backing', 'dict'),
    ('volume', '@T', dict(pool='@BP', name='@BV'), 'clone_from', 'dict'),
    ('hostdev', '@T', dict(guest='@BG'), 'address', 'dict'),
    ('hostdev', '@T', dict(guest='@BG', address=USB), 'boot_order', 'int'),
    ('hostdev', '@T', dict(guest='@BG', address=USB), 'live', 'bool'),
    ('hostdev', '@T', dict(guest='@BG', address=USB), 'managed', 'bool'),
    ('hostdev', '@T', dict(guest='@BG', address=dict(type='pci', bus=3, slot=0, function=0)), 'interface', 'dict'),
    (
        'hostdev',
        '@T',
        dict(guest='@BG', address=dict(type='pci', bus=3, slot=0, function=0), interface=dict()),
        'interface.vlan',
        'int',
    ),
    ('npiv_vhba', '@T', dict(name='@NEW'), 'persistent', 'bool'),
    ('guest_agent', '@T', dict(AGENT, action='ping'), 'timeout', 'int'),
    ('guest_agent', '@T', dict(AGENT, action='exec'), 'argv', 'list'),
    ('guest_agent', '@T', dict(AGENT, action='exec', argv=['true']), 'env', 'dict'),
    ('guest_agent', '@T', dict(AGENT, action='exec', argv=['true']), 'allow_failure', 'bool'),
    ('guest_agent', '@T', dict(AGENT, action='freeze'), 'mountpoints', 'list'),
    ('migrate', '@QA', dict(name='@NEW', dest_uri='@QB'), 'bandwidth', 'int'),
    ('migrate', '@QA', dict(name='@NEW', dest_uri='@QB'), 'timeout', 'int'),
    ('migrate', '@QA', dict(name='@NEW', dest_uri='@QB'), 'live', 'bool'),
    ('guest_info', '@T', dict(), 'stats', 'bool'),
    ('storage_pool_info', '@T', dict(), 'refresh', 'bool'),
    ('hostdev_info', '@T', dict(), 'free_only', 'bool'),
    ('hostdev_info', '@T', dict(), 'types', 'list'),
]


@st.composite
def type_cases(draw):
    module, uri, base, path, kind = draw(st.sampled_from(TYPE_TARGETS))
    value = draw(st.sampled_from(WRONG[kind]))
    return case('wrong type', module, uri, put(base, path, value), {path, leaf(path)})


# ---------------------------------------------------------------------------------------------
# values out of range: negative, overflowing, malformed

PCI = dict(type='pci', bus=3, slot=0, function=0)
RANGE_TARGETS = [
    ('guest', '@T', GUEST, 'memory', [-1, '-5GiB', 0, 10**30, '99999999999PiB', 'inf', '-0.5GiB', '12 parsecs']),
    ('guest', '@T', GUEST, 'current_memory', ['1TiB', -1, '-1MiB']),
    ('guest', '@T', GUEST, 'vcpus', [-1, 0, 2**31, 100000]),
    ('guest', '@T', GUEST, 'max_vcpus', [-1, 0, 2**31]),
    ('guest', '@T', dict(GUEST, cpu=dict(topology=dict())), 'cpu.topology.sockets', [-1, 0, 2**31]),
    (
        'guest',
        '@T',
        dict(GUEST, disks=[dict(target='vda', path='/nonexistent/x.raw', iotune=dict())]),
        'disks[0].iotune.total_iops_sec',
        [-1, -(2**40)],
    ),
    ('guest', '@T', dict(GUEST, disks=[dict(target='vda', path='/nonexistent/x.raw')]), 'disks[0].boot_order', [-1, 0]),
    ('guest', '@T', dict(GUEST, disks=[dict(path='/nonexistent/x.raw')]), 'disks[0].target', ['', 'a/b', 'vd<a>']),
    (
        'guest',
        '@T',
        dict(GUEST, interfaces=[dict(type='user')]),
        'interfaces[0].mac',
        ['zz:zz', 'ff:ff:ff:ff:ff:ff', '52:54:00:00:00', '01:00:5e:00:00:01'],
    ),
    ('guest', '@T', dict(GUEST, state='stopped'), 'shutdown_timeout', [-1, -100]),
    ('guest', '@T', dict(GUEST, state='running', wait_for='agent'), 'wait_timeout', [-1, 0]),
    ('guest', '@T', GUEST, 'title', ['a\x00b', 'bell\x07', '\x1b[31mred']),
    ('guest', '@T', GUEST, 'description', ['nul\x00', 'ctl\x01x']),
    (
        'guest',
        '@T',
        dict(name='@NEW', domain_type='test', boot=dict()),
        'boot.cmdline',
        ['console=ttyS0\x00init=/bin/sh'],
    ),
    ('network', '@T', dict(name='@BN'), 'mtu', [-1, 0, 67, 65536, 10**12]),
    ('network', '@T', dict(name='@BN', ip='198.51.100.1'), 'prefix', [-1, 0, 31, 33, 10**6]),
    ('network', '@T', dict(name='@NEW'), 'ip', ['300.1.1.1/24', '198.51.100.1/33', 'not-an-ip', '198.51.100.1/-1']),
    ('network', '@T', dict(name='@NEW', ip='198.51.100.1'), 'netmask', ['255.0.255.0', '999.0.0.0', 'x']),
    (
        'network',
        '@T',
        dict(name='@NEW', ip='198.51.100.1/24', dhcp=dict(ranges=[dict(start='198.51.100.50')])),
        'dhcp.ranges[0].end',
        ['198.51.100.10', '198.51.101.60', 'x'],
    ),
    (
        'network',
        '@T',
        dict(name='@NEW', ip='198.51.100.1/24', dhcp=dict(hosts=[dict(ip='198.51.100.9')])),
        'dhcp.hosts[0].mac',
        ['nope', 'ff:ff:ff:ff:ff:ff'],
    ),
    ('network', '@T', dict(name='@NEW', ip='198.51.100.1/24'), 'domain', ['-bad-', 'a..b', 'x' * 300, 'a b', 'a\x00']),
    ('storage_pool', '@T', dict(name='@NEW', type='dir'), 'target', ['relative/dir', '', 'x/../..']),
    (
        'storage_pool',
        '@T',
        dict(name='@NEW', type='dir', target='/x', permissions=dict()),
        'permissions.mode',
        ['rwx', '9999', -1, '0o1777777', '12345'],
    ),
    (
        'storage_pool',
        '@T',
        dict(name='@NEW', type='dir', target='/x', permissions=dict()),
        'permissions.owner',
        ['nosuchuser-reliability', -5, 2**40],
    ),
    (
        'storage_pool',
        '@T',
        dict(name='@NEW', type='netfs', target='/mnt/x', source=dict(host='h', dir='/e')),
        'source.port',
        [-1, 70000],
    ),
    (
        'volume',
        '@T',
        dict(pool='@BP', name='new.qcow2'),
        'capacity',
        [-1, '-1GiB', 10**30, 'lots', 0, '99999999999PiB'],
    ),
    ('volume', '@T', dict(pool='@BP', name='new.qcow2', capacity='1MiB'), 'allocation', [-1, '-5MiB', 'x']),
    ('volume', '@T', dict(pool='@BP', name='@BV'), 'capacity', ['512KiB', '1KiB']),
    ('volume', '@QA', dict(pool='@QP', name='new.img', capacity='1MiB'), 'format', ['evil', 'qcow3', '../x']),
    ('volume', '@QA', dict(pool='@QP', name='new.img'), 'src', ['/nonexistent/x.img', '/etc', 'relative/x.img']),
    ('volume', '@QA', dict(pool='@QP', name='new.img'), 'url', ['notaurl', 'http://127.0.0.1:1/x.img']),
    (
        'volume',
        '@QA',
        dict(pool='@QP', name='new.img', url='http://127.0.0.1:1/x.img'),
        'checksum',
        ['md5:zz', 'sha999:abcd', 'nocolon'],
    ),
    (
        'volume',
        '@QA',
        dict(pool='@QP', name='new.qcow2', backing=dict()),
        'backing.path',
        ['relative.img', '/nonexistent/base.img'],
    ),
    ('hostdev', '@T', dict(guest='@BG', address=dict(PCI)), 'address.bus', [256, -1, '0x100', 'zz']),
    ('hostdev', '@T', dict(guest='@BG', address=dict(PCI)), 'address.slot', [32, -1, '0x20', 'g']),
    ('hostdev', '@T', dict(guest='@BG', address=dict(PCI)), 'address.function', [8, -1, 'x']),
    ('hostdev', '@T', dict(guest='@BG', address=dict(PCI)), 'address.domain', [65536, -1, '0x10000']),
    ('hostdev', '@T', dict(guest='@BG', address=dict(USB)), 'address.vendor', [-1, 65536, '0x10000', 'zzzz']),
    ('hostdev', '@T', dict(guest='@BG', address=dict(type='usb', bus=1)), 'address.device', [-1, 1000, 'x']),
    ('hostdev', '@T', dict(guest='@BG', address=dict(PCI), interface=dict()), 'interface.vlan', [0, 4095, -1, 10**6]),
    (
        'hostdev',
        '@T',
        dict(guest='@BG', address=dict(PCI), interface=dict()),
        'interface.mac',
        ['nope', 'ff:ff:ff:ff:ff:ff'],
    ),
    ('hostdev', '@T', dict(guest='@BG', address=dict(USB)), 'boot_order', [0, -1]),
    ('hostdev', '@T', dict(guest='@BG', address=dict(PCI), rom=dict()), 'rom.file', ['relative.rom']),
    ('guest_agent', '@T', dict(AGENT, action='ping'), 'timeout', [-1, 0, 10**12]),
    (
        'guest_agent',
        '@T',
        dict(AGENT, action='write_file', path='/tmp/x', content='y'),
        'mode',
        ['999', 'rwx', -1, '12345', 'u+x'],
    ),
    ('guest_agent', '@T', dict(AGENT, action='set_time'), 'time', ['yesterday', '2030-13-45T99:99:99', 10**20, 'NaN']),
    ('guest_agent', '@T', dict(AGENT, action='exec', argv=['true']), 'env', [{'A=B': 'x'}, {'': 'x'}, {'A': 'x\x00'}]),
    ('guest_agent', '@T', dict(AGENT, action='exec'), 'argv', [[], ['']]),
    ('guest_agent', '@T', dict(AGENT, action='read_file'), 'path', ['']),
    ('guest_agent', '@T', dict(AGENT, action='set_password', user_password='pw'), 'user', ['root:x', '', 'a\nb']),
    ('guest_agent', '@T', dict(AGENT, action='set_password', user='tester'), 'user_password', ['', 'a\nb', 'x\x00y']),
    ('guest_agent', '@T', dict(AGENT, action='freeze'), 'mountpoints', [[]]),
    ('migrate', '@QA', dict(name='@NEW', dest_uri='@QB'), 'bandwidth', [-1, 0]),
    ('migrate', '@QA', dict(name='@NEW', dest_uri='@QB'), 'timeout', [-1, 0]),
    (
        'migrate',
        '@QA',
        dict(name='@NEW', dest_uri='@QB'),
        'migrate_uri',
        ['qemu+tcp://x/system', 'tcp://', 'not a uri'],
    ),
    ('migrate', '@QA', dict(name='@NEW'), 'dest_uri', ['@QA']),
    (
        'npiv_vhba',
        '@T',
        dict(name='@NEW', persistent=False, wwpn='5001a4a93526d0a2'),
        'wwnn',
        ['zz', '123', 'g' * 16, '5001a4a9xxxxxxxx'],
    ),
    ('npiv_vhba', '@T', dict(name='@NEW', persistent=False), 'parent', ['scsi_host999', '../x', 'pci_0000_00_02_0']),
    ('npiv_vhba', '@T', dict(name='@NEW', persistent=False, parent_wwpn='1000000012341234'), 'parent_wwnn', ['zz']),
]


@st.composite
def range_cases(draw):
    module, uri, base, path, values = draw(st.sampled_from(RANGE_TARGETS))
    value = draw(st.sampled_from(values))
    names = {path, leaf(path)}
    if path in ('current_memory',):
        names.add('memory')
    return case('out of range / malformed', module, uri, put(base, path, value), names)


# ---------------------------------------------------------------------------------------------
# unknown enum values

ENUM_TARGETS = [
    ('guest', '@T', GUEST, 'state', ['present', 'running', 'stopped', 'paused', 'absent']),
    ('guest', '@T', dict(name='@NEW'), 'domain_type', ['kvm', 'qemu', 'xen', 'test']),
    ('guest', '@T', GUEST, 'os_type', ['hvm', 'xen', 'linux']),
    ('guest', '@T', GUEST, 'firmware', ['bios', 'efi']),
    ('guest', '@T', GUEST, 'graphics', ['none', 'vnc', 'spice']),
    ('guest', '@T', GUEST, 'video', ['none', 'virtio', 'qxl', 'vga', 'cirrus', 'bochs']),
    ('guest', '@T', GUEST, 'wait_for', ['none', 'agent']),
    ('guest', '@T', dict(GUEST, cpu=dict()), 'cpu.mode', ['host-passthrough', 'host-model', 'custom', 'maximum']),
    (
        'guest',
        '@T',
        dict(GUEST, disks=[dict(target='vda', path='/x.raw')]),
        'disks[0].bus',
        ['virtio', 'scsi', 'sata', 'ide', 'usb', 'xen', 'fdc'],
    ),
    (
        'guest',
        '@T',
        dict(GUEST, disks=[dict(target='vda', path='/x.raw')]),
        'disks[0].cache',
        ['default', 'none', 'writethrough', 'writeback', 'directsync', 'unsafe'],
    ),
    ('guest', '@T', dict(GUEST, interfaces=[dict()]), 'interfaces[0].type', ['network', 'bridge', 'direct', 'user']),
    ('guest', '@T', dict(GUEST, serial=dict()), 'serial.type', ['pty', 'file', 'none']),
    ('network', '@T', dict(name='@BN'), 'state', ['present', 'active', 'inactive', 'absent']),
    ('network', '@T', dict(name='@BN'), 'forward', ['nat', 'route', 'open', 'bridge', 'isolated']),
    ('storage_pool', '@T', dict(name='@BP'), 'state', ['present', 'active', 'inactive', 'absent']),
    (
        'storage_pool',
        '@T',
        dict(name='@NEW', target='/x'),
        'type',
        ['dir', 'fs', 'netfs', 'logical', 'disk', 'iscsi', 'scsi', 'mpath'],
    ),
    ('volume', '@T', dict(pool='@BP', name='@BV'), 'state', ['present', 'absent']),
    (
        'volume',
        '@T',
        dict(pool='@BP', name='@BV', state='absent'),
        'wipe',
        ['zero', 'nnsa', 'dod', 'bsi', 'gutmann', 'schneier', 'pfitzner7', 'pfitzner33', 'random', 'trim'],
    ),
    ('volume', '@QA', dict(pool='@QP', name='new.img', capacity='1MiB'), 'format', ['raw', 'qcow2', 'iso', 'vmdk']),
    ('hostdev', '@T', dict(guest='@BG', address=USB), 'state', ['present', 'absent']),
    (
        'hostdev',
        '@T',
        dict(guest='@BG', address=dict(bus=3, slot=0, function=0)),
        'address.type',
        ['pci', 'usb', 'scsi'],
    ),
    ('npiv_vhba', '@T', dict(name='@NEW'), 'state', ['present', 'absent']),
    (
        'guest_agent',
        '@T',
        AGENT,
        'action',
        ['wait', 'ping', 'info', 'exec', 'read_file', 'write_file', 'freeze', 'thaw', 'set_time', 'set_password'],
    ),
    ('guest_agent', '@T', dict(AGENT, action='write_file', path='/tmp/x', content='y'), 'encoding', ['text', 'base64']),
    ('migrate', '@QA', dict(name='@NEW', dest_uri='@QB'), 'copy_storage', ['none', 'all', 'incremental']),
    ('migrate', '@QA', dict(name='@NEW', dest_uri='@QB'), 'timeout_action', ['abort', 'suspend', 'postcopy']),
    ('guest_info', '@T', dict(), 'address_source', ['none', 'lease', 'agent', 'arp', 'any']),
]
ODD_ENUMS = ['', 'PRESENT', 'present ', 'absent;rm -rf /', '../x', 'running\n']


@st.composite
def enum_cases(draw):
    module, uri, base, path, choices = draw(st.sampled_from(ENUM_TARGETS))
    value = draw(st.one_of(word.filter(lambda v: v not in choices), st.sampled_from(ODD_ENUMS)))
    if path == 'types':
        value = [value]
    return case('unknown enum', module, uri, put(base, path, value), {path, leaf(path)})


# ---------------------------------------------------------------------------------------------
# unknown options, missing / conflicting options

BASES = {
    'guest': dict(name='@BG'),
    'guest_info': dict(),
    'guest_agent': dict(name='@BG', action='ping'),
    'network': dict(name='@BN'),
    'host_info': dict(),
    'hostdev': dict(guest='@BG', address=USB),
    'hostdev_info': dict(),
    'npiv_vhba': dict(name='@NEW'),
    'migrate': dict(name='@NEW', dest_uri='@QB'),
    'storage_pool': dict(name='@BP'),
    'volume': dict(pool='@BP', name='@BV'),
    'storage_pool_info': dict(),
}
NESTED_UNKNOWN = [
    ('guest', dict(GUEST, disks=[dict(target='vda', path='/x.raw')]), 'disks[0]'),
    ('hostdev', dict(guest='@BG', address=dict(USB)), 'address'),
    ('network', dict(name='@BN', dhcp=dict()), 'dhcp'),
    ('storage_pool', dict(name='@BP', source=dict()), 'source'),
]


@st.composite
def unknown_option_cases(draw):
    module = draw(st.sampled_from(sorted(BASES)))
    option = 'bogus_' + draw(word)
    uri = '@QA' if module == 'migrate' else '@T'
    if draw(st.booleans()) and module in [entry[0] for entry in NESTED_UNKNOWN]:
        base, path = next(n[1:] for n in NESTED_UNKNOWN if n[0] == module)
        args = put(base, path + '.' + option, 1)
    else:
        args = dict(BASES[module], **{option: 1})
    return case('unknown option', module, uri, args, {option})


CONFLICTS = [
    ('volume', '@T', dict(name='x.qcow2', capacity='1MiB'), ['pool']),
    ('volume', '@T', dict(pool='@BP', capacity='1MiB'), ['name']),
    ('guest', '@T', dict(domain_type='test'), ['name']),
    ('guest_agent', '@T', dict(name='@BG'), ['action']),
    ('guest_agent', '@T', dict(name='@BG', action='exec'), ['argv', 'cmd']),
    ('guest_agent', '@T', dict(name='@BG', action='exec', argv=['true'], cmd='true'), ['argv', 'cmd']),
    ('guest_agent', '@T', dict(name='@BG', action='write_file', content='x'), ['path']),
    ('guest_agent', '@T', dict(name='@BG', action='set_password', user='tester'), ['user_password']),
    ('guest_agent', '@T', dict(name='@BG', action='thaw', mountpoints=['/data']), ['mountpoints']),
    ('hostdev', '@T', dict(address=USB), ['guest']),
    ('hostdev', '@T', dict(guest='@BG'), ['device', 'address']),
    ('migrate', '@QA', dict(name='@NEW'), ['dest_uri']),
    ('migrate', '@QA', dict(name='@NEW', dest_uri='@QB', tunnelled=True), ['tunnelled', 'p2p']),
    ('npiv_vhba', '@T', dict(), ['name', 'wwnn']),
    ('npiv_vhba', '@T', dict(name='@NEW', wwnn='5001a4a93526d0a1'), ['wwnn', 'wwpn']),
    ('host_info', '@T', dict(username='someone'), ['username', 'password']),
    ('guest', '@T', dict(name='@BG', memory='256MiB', xml='<domain/>'), ['xml', 'memory']),
    ('guest', '@T', dict(name='@BG', cpu=dict(mode='custom')), ['model']),
    ('volume', '@QA', dict(pool='@QP', name='x.img', src='/etc/hostname', url='http://127.0.0.1:1/x'), ['src', 'url']),
    ('volume', '@QA', dict(pool='@QP', name='x.img', capacity='1MiB', checksum='sha256:00'), ['checksum', 'url']),
    ('network', '@T', dict(name='@NEW', ip='198.51.100.1', prefix=24, netmask='255.255.255.0'), ['netmask', 'prefix']),
    ('network', '@T', dict(name='@NEW', prefix=24), ['prefix', 'ip']),
    ('storage_pool', '@T', dict(name='@NEW', type='dir', target='/x', xml='<pool/>'), ['xml', 'type']),
    ('storage_pool', '@T', dict(name='@NEW', target='/x'), ['type']),
]


@st.composite
def conflict_cases(draw):
    module, uri, args, names = draw(st.sampled_from(CONFLICTS))
    return case('missing / conflicting options', module, uri, args, names)


# ---------------------------------------------------------------------------------------------
# XML: mismatched name, broken, hostile, injected elements

XML_TEMPLATES = {
    'guest': "<domain type='test'><name>{name}</name><memory unit='MiB'>128</memory><os><type>hvm</type></os>"
    '{extra}</domain>',
    'network': "<network><name>{name}</name><ip address='198.51.100.1' prefix='24'/>{extra}</network>",
    'storage_pool': "<pool type='dir'><name>{name}</name><target><path>/x/{name}</path></target>{extra}</pool>",
}
ROOTS = {'guest': 'domain', 'network': 'network', 'storage_pool': 'pool'}
XXE = "<!DOCTYPE r [<!ENTITY x SYSTEM 'file:///etc/hostname'>]>"
LAUGHS = (
    "<!DOCTYPE r [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
    "<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'><!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'>]>"
)


@st.composite
def xml_cases(draw):
    module = draw(st.sampled_from(sorted(XML_TEMPLATES)))
    template = XML_TEMPLATES[module]
    kind = draw(
        st.sampled_from(
            [
                'mismatch',
                'truncated',
                'root',
                'xxe',
                'laughs',
                'dup-name',
                'unknown-element',
                'uuid-clash',
                'text-around',
            ]
        )
    )
    name = '@NEW'
    if kind == 'mismatch':
        xml = template.format(name='@NEW-' + draw(word), extra='')
    elif kind == 'truncated':
        full = template.format(name=name, extra='')
        xml = full[: draw(st.integers(min_value=1, max_value=len(full) - 1))]
    elif kind == 'root':
        other = draw(st.sampled_from(sorted(set(ROOTS.values()) - {ROOTS[module]}) + ['html', 'evil']))
        xml = template.format(name=name, extra='').replace('<%s' % ROOTS[module], '<' + other, 1)
        xml = xml[: xml.rindex('</')] + '</%s>' % other
    elif kind == 'xxe':
        xml = XXE + template.format(name='&x;', extra='')
    elif kind == 'laughs':
        xml = LAUGHS + template.format(name=name, extra='<description>&d;</description>')
    elif kind == 'dup-name':
        xml = template.format(name=name, extra='<name>@NEW-injected</name>')
    elif kind == 'unknown-element':
        xml = template.format(name=name, extra='<%s/>' % draw(st.sampled_from(['evil', 'script', 'hostdev'])))
    elif kind == 'uuid-clash':
        xml = template.format(name=name, extra='<uuid>@UUID_%s</uuid>' % module)
        return case('xml: ' + kind, module, '@T', dict(name=name, xml=xml), {'xml', 'uuid', 'UUID'})
    else:
        xml = template.format(name=name, extra='') + draw(st.sampled_from(['<evil/>', 'trailing', '<!-- x -->x']))
    return case('xml: ' + kind, module, '@T', dict(name=name, xml=xml), {'xml'})


# ---------------------------------------------------------------------------------------------
# connection options

BAD_URIS = [
    'qemu:///../../etc',
    'bogus://',
    'qemu+unix:///system?socket=/nonexistent/libvirt-sock',
    'test+unix:///default?socket=/dev/null',
    'qemu:///session?socket=/etc/passwd',
    'qemu:///system\nx',
]


@st.composite
def uri_cases(draw):
    module = draw(st.sampled_from(['host_info', 'guest_info', 'storage_pool_info', 'hostdev_info']))
    uri = draw(st.sampled_from(BAD_URIS))
    return case('connection uri', module, uri, {}, {'uri'})


ALL_CASES = st.one_of(
    name_cases(),
    type_cases(),
    range_cases(),
    enum_cases(),
    unknown_option_cases(),
    conflict_cases(),
    xml_cases(),
    uri_cases(),
)


def systematic_cases():
    """One input per target of every list above (and every XML attack per XML module), so that
    each target is covered whatever the random part draws."""
    cases = []
    for module, uri, base, path in NAME_TARGETS:
        for value in ('a/b', 'x\x00y'):
            cases.append(case('hostile name', module, uri, put(base, path, value), {path, leaf(path)}))
    for module, uri, base, path, kind in TYPE_TARGETS:
        cases.append(case('wrong type', module, uri, put(base, path, WRONG[kind][0]), {path, leaf(path)}))
    for module, uri, base, path, values in RANGE_TARGETS:
        names = {path, leaf(path)} | ({'memory'} if path == 'current_memory' else set())
        cases.append(case('out of range / malformed', module, uri, put(base, path, values[0]), names))
    for module, uri, base, path, _choices in ENUM_TARGETS:
        cases.append(case('unknown enum', module, uri, put(base, path, 'bogus'), {path, leaf(path)}))
    for module, uri, args, names in CONFLICTS:
        cases.append(case('missing / conflicting options', module, uri, args, names))
    for module in sorted(XML_TEMPLATES):
        template = XML_TEMPLATES[module]
        attacks = dict(
            mismatch=template.format(name='@NEW-other', extra=''),
            truncated=template.format(name='@NEW', extra='')[:-3],
            root=template.format(name='@NEW', extra='').replace('<' + ROOTS[module], '<evil', 1),
            xxe=XXE + template.format(name='&x;', extra=''),
            laughs=LAUGHS + template.format(name='@NEW', extra='<description>&d;</description>'),
            **{'dup-name': template.format(name='@NEW', extra='<name>@NEW-injected</name>')},
            **{'unknown-element': template.format(name='@NEW', extra='<evil/>')},
            **{'text-around': template.format(name='@NEW', extra='') + '<evil/>'},
        )
        for kind, xml in sorted(attacks.items()):
            cases.append(case('xml: ' + kind, module, '@T', dict(name='@NEW', xml=xml), {'xml'}))
        uuid_xml = template.format(name='@NEW', extra='<uuid>@UUID_%s</uuid>' % module)
        cases.append(case('xml: uuid-clash', module, '@T', dict(name='@NEW', xml=uuid_xml), {'xml', 'uuid', 'UUID'}))
    for uri in BAD_URIS:
        cases.append(case('connection uri', 'host_info', uri, {}, {'uri'}))
    return cases


def generate(count=EXAMPLES):
    """The systematic inputs, then ``count`` drawn by hypothesis (deterministic), de-duplicated."""
    cases = systematic_cases()

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(ALL_CASES)
    def collect(item):
        cases.append(item)

    collect()
    unique = {}
    for item in cases:
        unique.setdefault(dump_json([item['module'], item['uri'], item['args']]), item)
    return list(unique.values())


# ---------------------------------------------------------------------------------------------
# running them


def substitute(value, table):
    if isinstance(value, str):
        for key in sorted(table, key=len, reverse=True):
            value = value.replace(key, table[key])
        return value
    if isinstance(value, list):
        return [substitute(v, table) for v in value]
    if isinstance(value, dict):
        return {substitute(k, table): substitute(v, table) for k, v in value.items()}
    return value


def judge(item, result):
    """Reasons why ``result`` is not a clean failure naming the option ([] when it is)."""
    reasons = []
    if result.get('_traceback'):
        return ['traceback: %s' % result['_traceback'].splitlines()[-1][:200]]
    if not result.get('failed'):
        reasons.append('did not fail (changed=%s, actions=%s)' % (result.get('changed'), result.get('actions')))
        return reasons
    if result.get('changed'):
        reasons.append('failed but reported changed')
    if result.get('exception'):
        reasons.append('exception in result')
    if result.get('_rc') in (0, None):
        reasons.append('rc=%s' % result.get('_rc'))
    msg = result.get('msg') or ''
    if not any(name in msg for name in item['names']):
        reasons.append('message does not name %s: %s' % ('/'.join(sorted(item['names'])), msg[:220]))
    return reasons


def test_bad_input_fails_cleanly_and_changes_nothing(pair, tdrv, tdrv_uri, qemu):
    started = time.monotonic()
    cases = generate()
    a, b = pair.a, pair.b
    table = {
        '@T': tdrv_uri,
        '@QA': a.uri,
        '@QB': b.uri,
        '@BG': PREFIX + 'bad-guest',
        '@BN': PREFIX + 'bad-net',
        '@BP': PREFIX + 'bad-pool',
        '@BV': 'bad-vol.qcow2',
        '@QP': PREFIX + 'bad-qpool',
        '@NEW': PREFIX + 'bad-new',
    }
    # the baseline: existing objects, so that updates are attacked too
    baseline(
        run_caught('guest', dict(uri=tdrv_uri, name=table['@BG'], domain_type='test', memory='128MiB', state='running'))
    )
    baseline(run_caught('network', dict(uri=tdrv_uri, name=table['@BN'], ip='198.51.100.1/24')))
    baseline(run_caught('storage_pool', dict(uri=tdrv_uri, name=table['@BP'], type='dir', target='/bad/pool')))
    baseline(run_caught('volume', dict(uri=tdrv_uri, pool=table['@BP'], name=table['@BV'], capacity='1MiB')))
    conn_a = a.open()
    conn_b = b.open()
    try:
        pool = conn_a.storagePoolDefineXML(
            "<pool type='dir'><name>%s</name><target><path>/var/lib/libvirt/images/%s</path></target></pool>"
            % (table['@QP'], table['@QP']),
            0,
        )
        pool.build(0)
        pool.create(0)
        pool.createXML("<volume><name>q.raw</name><capacity unit='MiB'>1</capacity></volume>", 0)
        table['@UUID_guest'] = tdrv.lookupByName(table['@BG']).UUIDString()
        table['@UUID_network'] = tdrv.networkLookupByName(table['@BN']).UUIDString()
        table['@UUID_storage_pool'] = tdrv.storagePoolLookupByName(table['@BP']).UUIDString()

        def state():
            return dict(
                test=snapshot(tdrv, nodedevs=True),
                qa=snapshot(conn_a, pool_numbers=False),
                qb=snapshot(conn_b, pool_numbers=False),
                main=snapshot(qemu, keep=own, pool_numbers=False),
            )

        before = state()

        def execute(numbered):
            index, item = numbered
            # every input gets its own "new object" name: an input that wrongly creates one cannot
            # change what later inputs see (they run in parallel, in no fixed order)
            own = dict(table, **{'@NEW': '%sbad-new%03d' % (PREFIX, index)})
            args = dict(substitute(item['args'], own), uri=substitute(item['uri'], own))
            result = run_caught(item['module'], args, timeout=120)
            return judge(item, result), result

        outcomes = parallel(execute, list(enumerate(cases)))
        after = state()
    finally:
        conn_a.close()
        conn_b.close()
    diffs = {uri: snapshot_diff(before[uri], after[uri]) for uri in before}
    changed_objects = sum(len(v) for d in diffs.values() for v in d.values())

    per_module = {}
    categories = {}
    failures = []
    for item, (reasons, _result) in zip(cases, outcomes):
        row = per_module.setdefault(item['module'], dict(inputs=0, passed=0))
        row['inputs'] += 1
        categories[item['category']] = categories.get(item['category'], 0) + 1
        if reasons:
            shown = json.dumps(item['args'], ensure_ascii=True)[:260]
            failures.append('%s %s: %s' % (item['module'], shown, '; '.join(reasons)))
        else:
            row['passed'] += 1
    for text in sorted(set(failures)):
        FIGURES.finding('bad input', text)
    for uri, diff in sorted(diffs.items()):
        if any(diff.values()):
            FIGURES.finding('bad input', 'libvirt state changed on %s: %s' % (uri, diff))
    FIGURES.bad_input = dict(
        inputs=len(cases),
        failures=len(failures),
        modules=per_module,
        categories=categories,
        snapshots=2 * len(before),
        state_changes=changed_objects,
    )
    FIGURES.timings['bad input'] = time.monotonic() - started
    assert len(cases) >= MIN_INPUTS, 'only %d distinct inputs generated' % len(cases)
    assert not failures and not changed_objects, '%d of %d inputs not handled cleanly:\n%s\nstate: %s' % (
        len(failures),
        len(cases),
        '\n'.join(failures[:60]),
        diffs,
    )


def baseline(result):
    if result.get('failed'):
        raise AssertionError('baseline setup failed: %s' % (result.get('msg') or result.get('_traceback')))
