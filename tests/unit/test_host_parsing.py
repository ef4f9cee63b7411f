# SPDX-License-Identifier: GPL-3.0-or-later
"""host_info: /proc and /sys parsers on sample inputs, the root indirection, URI locality and
the capabilities side."""

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import is_local
from ansible_collections.virtops.libvirt.plugins.module_utils._host import info as H

CPUINFO_INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr vmx smx est tm2 ssse3 sse4_1 sse4_2 avx2
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr vmx smx est tm2 ssse3 sse4_1 sse4_2 avx2
"""
CPUINFO_AMD = 'processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme svm npt lbrv sse4a\n'
CPUINFO_NONE = 'processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme hypervisor avx512f\n'
CPUINFO_ARM = 'processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n'

MEMINFO = """MemTotal:       32779464 kB
MemFree:        20113212 kB
MemAvailable:   28345120 kB
SwapTotal:       8388604 kB
SwapFree:        8388092 kB
AnonHugePages:    204800 kB
HugePages_Total:     512
HugePages_Free:      500
HugePages_Rsvd:        4
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:         1048576 kB
"""

STAT = """cpu  20913 10 15624 139274 333 0 155 35 7 0
cpu0 10000 5 7000 70000 100 0 80 20 0 0
intr 123456 0 0
ctxt 987654
"""

CAPS = """<capabilities><host><uuid>acd458ea-6c4c-487a-bfa9-85784bf8d7de</uuid>
<cpu><arch>x86_64</arch><model>Skylake-Server-IBRS</model><vendor>Intel</vendor>
<topology sockets='2' dies='1' cores='8' threads='2'/><feature name='vmx'/></cpu>
<topology><cells num='2'>
 <cell id='0'><memory unit='KiB'>16384000</memory><cpus num='2'><cpu id='0'/><cpu id='1'/></cpus></cell>
 <cell id='1'><memory unit='KiB'>16384000</memory><cpus num='2'><cpu id='2'/><cpu id='3'/></cpus></cell>
</cells></topology></host></capabilities>"""


def test_cpu_flags_and_hw_virt():
    assert H.hw_virt_flags(H.parse_cpu_flags(CPUINFO_INTEL)) == ['vmx']
    assert H.hw_virt_flags(H.parse_cpu_flags(CPUINFO_AMD)) == ['svm']
    assert H.hw_virt_flags(H.parse_cpu_flags(CPUINFO_NONE)) == []
    assert 'asimd' in H.parse_cpu_flags(CPUINFO_ARM)
    assert H.parse_cpu_flags('') == set() and H.parse_cpu_flags(None) == set()


def test_meminfo_hugepages_swap():
    info = H.parse_meminfo(MEMINFO)
    assert info['MemTotal'] == 32779464 * 1024
    assert info['HugePages_Total'] == 512  # a count, not a size
    assert H.hugepages(info) == dict(total=512, free=500, reserved=4, surplus=0, size=2 * 1024 * 1024)
    assert H.swap(info) == dict(total=8388604 * 1024, free=8388092 * 1024)
    assert H.hugepages({}) is None and H.swap({}) is None
    assert H.parse_meminfo('garbage\nMemTotal: lots kB\n') == {}


def test_steal_time_from_the_aggregate_line():
    steal = H.steal_time(STAT)
    total = 20913 + 10 + 15624 + 139274 + 333 + 0 + 155 + 35
    assert steal == dict(ticks=35, total_ticks=total, percent=round(3500.0 / total, 2))
    assert H.steal_time('cpu0 1 2 3 4 5 6 7 8\n') is None  # no aggregate line
    assert H.steal_time('cpu  1 2 3\n') is None  # old kernel without steal
    assert H.steal_time('cpu  0 0 0 0 0 0 0 0 0 0\n')['percent'] == 0.0


def test_ksm_and_module_parameters():
    files = dict(
        run='1\n',
        pages_shared='120\n',
        pages_sharing='4000\n',
        pages_to_scan='100\n',
        sleep_millisecs='20\n',
        merge_across_nodes='1\n',
    )
    assert H.ksm(files) == dict(
        run=1,
        running=True,
        pages_shared=120,
        pages_sharing=4000,
        pages_to_scan=100,
        sleep_millisecs=20,
        merge_across_nodes=1,
    )
    assert H.ksm({}) is None
    assert H.ksm(dict(run='0\n'))['running'] is False
    assert H.parse_bool_param('Y\n') is True and H.parse_bool_param('1') is True
    assert H.parse_bool_param('N') is False and H.parse_bool_param(None) is None
    assert H.nested_virtualization({'kvm_intel': None, 'kvm_amd': '1\n'}) == (True, 'kvm_amd')
    assert H.nested_virtualization({}) == (None, None)
    assert H.parse_int('2\n') == 2 and H.parse_int('x') is None and H.parse_int(None) is None


@pytest.mark.parametrize(
    'uri, local',
    [
        ('qemu:///system', True),
        ('qemu:///session', True),
        ('test:///default', True),
        ('test+unix:///default', True),
        ('qemu+unix:///system?socket=/run/x', True),
        ('qemu+ssh://root@hv2/system', False),
        ('qemu+tcp://hv2/system', False),
        ('qemu://hv2/system', False),
        ('qemu+tls://10.0.0.2:16514/system', False),
        # host_info now asks the collection's one is_local(): a URI without a host (whatever
        # the transport: libvirt then connects to localhost) or naming a loopback host reaches
        # this machine's daemon, and '' is libvirt's default URI, on this machine too. host_info's
        # own is_local_uri() said False for these (it only knew the unix transport).
        ('qemu+ssh:///system', True),
        ('qemu+ssh://localhost/system', True),
        ('qemu+tcp://127.0.0.1/system', True),
        ('', True),
    ],
)
def test_local_uri(uri, local):
    assert is_local(uri) is local


def _write(root, path, text):
    target = root / path.lstrip('/')
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def test_read_local_facts_below_a_root(tmp_path):
    _write(tmp_path, '/proc/cpuinfo', CPUINFO_INTEL)
    _write(tmp_path, '/proc/meminfo', MEMINFO)
    _write(tmp_path, '/proc/stat', STAT)
    _write(tmp_path, '/proc/sys/kernel/numa_balancing', '1\n')
    _write(tmp_path, '/sys/module/kvm_intel/parameters/nested', 'Y\n')
    _write(tmp_path, '/sys/kernel/mm/ksm/run', '1\n')
    _write(tmp_path, '/sys/kernel/mm/ksm/pages_sharing', '77\n')
    (tmp_path / 'sys/kernel/iommu_groups/0').mkdir(parents=True)
    (tmp_path / 'sys/kernel/iommu_groups/1').mkdir(parents=True)
    _write(tmp_path, '/dev/kvm', '')
    facts = H.read_local_facts(str(tmp_path))
    assert facts['hw_virt_flags'] == ['vmx']
    assert facts['kvm_device'] is True
    assert (facts['nested_virtualization'], facts['nested_module']) == (True, 'kvm_intel')
    assert facts['ksm']['running'] is True and facts['ksm']['pages_sharing'] == 77
    assert facts['ksm']['pages_shared'] is None  # file missing
    assert facts['numa_balancing'] == 1
    assert facts['hugepages']['total'] == 512
    assert facts['swap']['total'] == 8388604 * 1024
    assert facts['iommu'] == dict(enabled=True, groups=2)
    assert facts['steal_time']['ticks'] == 35


def test_read_local_facts_on_an_empty_root(tmp_path):
    facts = H.read_local_facts(str(tmp_path))
    assert facts['hw_virt_flags'] == [] and facts['kvm_device'] is False
    assert facts['nested_virtualization'] is None and facts['ksm'] is None
    assert facts['numa_balancing'] is None and facts['hugepages'] is None and facts['swap'] is None
    assert facts['iommu'] == dict(enabled=False, groups=0) and facts['steal_time'] is None


def test_capabilities_side():
    caps = X.parse(CAPS)
    info = ['x86_64', 32000, 32, 2100, 2, 2, 8, 2]
    cpu = H.cpu_facts(caps, info)
    assert cpu == dict(
        arch='x86_64',
        model='Skylake-Server-IBRS',
        vendor='Intel',
        logical_cpus=32,
        mhz=2100,
        sockets=2,
        dies=1,
        cores=8,
        threads=2,
    )
    cells = H.numa_cells(caps, [1000, 2000])
    assert cells == [
        dict(id=0, memory_total=16384000 * 1024, memory_free=1000, cpus=[0, 1]),
        dict(id=1, memory_total=16384000 * 1024, memory_free=2000, cpus=[2, 3]),
    ]
    assert H.numa_cells(caps, None)[0]['memory_free'] is None
    assert H.version_string(9000000) == '9.0.0' and H.version_string(7002022) == '7.2.22'
    assert H.version_string(None) is None


def test_remote_uri_gives_null_kernel_facts():
    conn_facts = dict(uri='qemu+ssh://hv2/system', cpu=dict(arch='x86_64'), numa=dict(nodes=1, cells=[]))
    facts = H.assemble(conn_facts, None)
    for key in ('hw_virtualization', 'kvm_device', 'nested_virtualization', 'ksm', 'hugepages', 'swap', 'steal_time'):
        assert facts[key] is None, key
    assert facts['cpu']['hw_virt_flags'] is None
    assert facts['iommu'] == dict(enabled=None, groups=None)
    assert facts['numa']['automatic_balancing'] is None
    local = H.assemble(conn_facts, dict(hw_virt_flags=['svm'], numa_balancing=0, kvm_device=True))
    assert local['hw_virtualization'] is True and local['numa']['automatic_balancing'] is False
