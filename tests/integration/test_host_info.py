# SPDX-License-Identifier: GPL-3.0-or-later
"""virtops.libvirt.host_info against qemu:///system and the test driver, checked against what
libvirt and the kernel say directly."""

from __future__ import annotations

import os

import libvirt
from virtops_helpers import ok, run_module

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors as _errors
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import is_local
from ansible_collections.virtops.libvirt.plugins.module_utils._host.info import HostInfo, parse_cpu_flags


def read(path):
    with open(path) as handle:
        return handle.read()


def count(conn, flags):
    return len(conn.listAllDomains(flags))


def test_qemu_system_host_summary(qemu):
    running_before = count(qemu, libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    total_before = count(qemu, 0)
    result = ok(run_module('host_info', dict(uri='qemu:///system')))
    running_after = count(qemu, libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    total_after = count(qemu, 0)
    assert result['changed'] is False and 'diff' not in result
    host = result['host']
    assert host['local'] is True and host['uri'] == 'qemu:///system'

    # virtualization: this machine's CPU has no vmx/svm, so guests run under TCG even though /dev/kvm exists
    flags = parse_cpu_flags(read('/proc/cpuinfo'))
    expected = sorted(flags & {'vmx', 'svm'})
    assert host['cpu']['hw_virt_flags'] == expected
    assert host['hw_virtualization'] is bool(expected)
    assert host['kvm_device'] is os.path.exists('/dev/kvm')
    if not expected:
        assert host['virt_type'] == 'qemu'
        assert 'kvm' not in host['virt_types_available']
    assert host['virt_type'] in host['virt_types_available']

    # versions and CPU as libvirt reports them
    assert host['libvirt']['version_number'] == qemu.getLibVersion()
    assert host['libvirt']['version'].startswith('%d.' % (qemu.getLibVersion() // 1000000))
    assert host['hypervisor']['type'] == 'QEMU'
    assert host['hypervisor']['version_number'] == qemu.getVersion()
    info = qemu.getInfo()
    cpu = host['cpu']
    assert cpu['arch'] == info[0] == os.uname().machine
    assert cpu['logical_cpus'] == info[2] == os.cpu_count()
    assert cpu['sockets'] * cpu['cores'] * cpu['threads'] * (cpu['dies'] or 1) == info[2]
    assert cpu['vendor'] and cpu['model']

    # NUMA and memory: plausible and consistent
    numa = host['numa']
    assert numa['nodes'] == len(numa['cells']) >= 1
    assert sorted(c for cell in numa['cells'] for c in cell['cpus']) == list(range(info[2]))
    for cell in numa['cells']:
        assert 0 < cell['memory_free'] <= cell['memory_total']
    assert 0 < host['memory']['free'] < host['memory']['total']
    balancing = (
        read('/proc/sys/kernel/numa_balancing').strip() if os.path.exists('/proc/sys/kernel/numa_balancing') else None
    )
    assert numa['automatic_balancing_mode'] == (int(balancing) if balancing is not None else None)

    # kernel facts, read locally
    meminfo = {line.split(':')[0]: line.split()[1] for line in read('/proc/meminfo').splitlines()}
    assert host['hugepages']['total'] == int(meminfo['HugePages_Total'])
    assert host['hugepages']['size'] == int(meminfo['Hugepagesize']) * 1024
    assert host['swap']['total'] == int(meminfo['SwapTotal']) * 1024
    assert host['ksm']['run'] == int(read('/sys/kernel/mm/ksm/run'))
    assert host['ksm']['pages_to_scan'] == int(read('/sys/kernel/mm/ksm/pages_to_scan'))
    groups = os.listdir('/sys/kernel/iommu_groups') if os.path.isdir('/sys/kernel/iommu_groups') else []
    assert host['iommu'] == dict(enabled=bool(groups), groups=len(groups))
    steal_now = int(read('/proc/stat').splitlines()[0].split()[8])
    assert 0 <= host['steal_time']['ticks'] <= steal_now
    assert 0 <= host['steal_time']['percent'] <= 100
    for module in ('kvm_intel', 'kvm_amd'):
        path = '/sys/module/%s/parameters/nested' % module
        if os.path.exists(path):
            assert host['nested_virtualization'] is (read(path).strip() in ('Y', '1'))
            break
    else:
        assert host['nested_virtualization'] is None

    # guest counts (other test sessions may start/stop guests meanwhile: bounded by before/after)
    guests = host['guests']
    assert min(running_before, running_after) <= guests['running'] <= max(running_before, running_after)
    assert min(total_before, total_after) <= guests['total'] <= max(total_before, total_after)
    assert guests['total'] == guests['running'] + guests['inactive']

    # check mode: same answer, nothing to change
    checked = ok(run_module('host_info', dict(uri='qemu:///system'), check=True))
    assert checked['changed'] is False
    assert checked['host']['cpu'] == host['cpu'] and checked['host']['virt_type'] == host['virt_type']


def test_test_driver_summary(testdrv, uname):
    dom = testdrv.defineXML(
        "<domain type='test'><name>%s</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>" % uname
    )
    try:
        host = ok(run_module('host_info', dict(uri='test+unix:///default')))['host']
        assert host['virt_type'] == 'test' and host['hypervisor']['type'] == 'TEST'
        assert host['cpu']['arch'] == testdrv.getInfo()[0]
        assert host['numa']['nodes'] == 2 and len(host['numa']['cells']) == 2
        assert host['guests']['inactive'] >= 1 and host['guests']['persistent'] >= 1
    finally:
        dom.undefine()


class _Client:
    """Just what HostInfo uses of LibvirtClient, around an in-process test:///default connection."""

    params = {}
    check_mode = False
    diff_mode = False

    def __init__(self, uri):
        self.uri = uri
        self.is_local = is_local(uri)
        self.libvirt = libvirt
        self.conn = libvirt.open('test:///default')

    def call(self, func, *args, what=None):
        try:
            return getattr(self.conn, func)(*args) if isinstance(func, str) else func(*args)
        except libvirt.libvirtError as exc:
            raise _errors.translate(libvirt, exc, what=what, uri=self.uri) from None

    def is_error(self, exc, *names):
        return _errors.is_code(libvirt, exc, *names)


def test_remote_uri_reads_no_local_files(tmp_path):
    (tmp_path / 'proc').mkdir()
    (tmp_path / 'proc' / 'cpuinfo').write_text('flags\t: vmx\n')
    client = _Client('qemu+ssh://root@hv2.example.com/system')
    try:
        host = HostInfo(client, root=str(tmp_path)).run()['host']
    finally:
        client.conn.close()
    assert host['local'] is False
    for key in ('hw_virtualization', 'kvm_device', 'nested_virtualization', 'ksm', 'hugepages', 'swap', 'steal_time'):
        assert host[key] is None, key
    assert host['cpu']['hw_virt_flags'] is None and host['iommu']['enabled'] is None
    assert host['cpu']['logical_cpus'] and host['numa']['nodes'] == 2  # libvirt's side still there


def test_local_uri_reads_below_root(tmp_path):
    (tmp_path / 'proc').mkdir()
    (tmp_path / 'proc' / 'cpuinfo').write_text('processor\t: 0\nflags\t: fpu vmx\n')
    (tmp_path / 'dev').mkdir()
    (tmp_path / 'dev' / 'kvm').write_text('')
    client = _Client('test:///default')
    try:
        host = HostInfo(client, root=str(tmp_path)).run()['host']
    finally:
        client.conn.close()
    assert host['local'] is True
    assert host['cpu']['hw_virt_flags'] == ['vmx'] and host['hw_virtualization'] is True
    assert host['kvm_device'] is True and host['ksm'] is None and host['swap'] is None
