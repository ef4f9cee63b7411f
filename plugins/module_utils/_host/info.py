# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read side of the hypervisor host: libvirt's view (capabilities, node info, versions, guest
counts) plus kernel facts from /proc and /sys when the connection is local.

The /proc and /sys parsers are pure functions taking file text; :func:`read_local_facts` reads
the files below a ``root`` directory (``/`` in production, a fixture tree in tests).
"""

from __future__ import annotations

import os

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import domain_types_available, host_domain_type
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import LibvirtModuleError
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import unit_factor

KSM_KEYS = ('run', 'pages_shared', 'pages_sharing', 'pages_to_scan', 'sleep_millisecs', 'merge_across_nodes')
NESTED_MODULES = ('kvm_intel', 'kvm_amd')


# ---------------------------------------------------------------------------------------------
# pure parsers


def parse_cpu_flags(cpuinfo):
    """Flags of the first CPU in /proc/cpuinfo (``flags`` on x86, ``Features`` on ARM)."""
    for line in (cpuinfo or '').splitlines():
        key, sep, value = line.partition(':')
        if sep and key.strip() in ('flags', 'Features'):
            return set(value.split())
    return set()


def hw_virt_flags(flags):
    """The hardware virtualization flags present (Intel VT-x ``vmx``, AMD-V ``svm``), sorted."""
    return sorted(set(flags) & {'vmx', 'svm'})


def parse_meminfo(text):
    """/proc/meminfo as a dict: sizes (``kB``) in bytes, counts (HugePages_*) as ints."""
    out = {}
    for line in (text or '').splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        fields = value.split()
        if not fields or not fields[0].isdigit():
            continue
        number = int(fields[0])
        if len(fields) > 1 and fields[1].lower() == 'kb':
            number *= 1024
        out[key.strip()] = number
    return out


def hugepages(meminfo):
    """Default-size huge pages from parsed meminfo: counts of pages and the page size in bytes."""
    if 'HugePages_Total' not in meminfo:
        return None
    return dict(
        total=meminfo['HugePages_Total'],
        free=meminfo.get('HugePages_Free'),
        reserved=meminfo.get('HugePages_Rsvd'),
        surplus=meminfo.get('HugePages_Surp'),
        size=meminfo.get('Hugepagesize'),
    )


def swap(meminfo):
    if 'SwapTotal' not in meminfo:
        return None
    return dict(total=meminfo['SwapTotal'], free=meminfo.get('SwapFree'))


def parse_int(text):
    """An integer file (``/sys/kernel/mm/ksm/run``), None when missing or not a number."""
    if text is None:
        return None
    value = text.strip()
    if value.lstrip('-').isdigit():
        return int(value)
    return None


def parse_bool_param(text):
    """A kernel module boolean parameter (``Y``/``N``/``1``/``0``), None when missing."""
    if text is None:
        return None
    value = text.strip().upper()
    if value in ('Y', '1'):
        return True
    if value in ('N', '0'):
        return False
    return None


def ksm(files):
    """KSM state from ``{name: text}`` of /sys/kernel/mm/ksm files; None without KSM."""
    values = {key: parse_int(files.get(key)) for key in KSM_KEYS}
    if values['run'] is None:
        return None
    values['running'] = values['run'] == 1
    return values


def steal_time(stat):
    """Steal time from /proc/stat's aggregate ``cpu`` line (8th value, cumulative ticks since boot).

    ``percent`` is steal over the sum of the first eight values (user .. steal; guest time is
    already part of user/nice).
    """
    for line in (stat or '').splitlines():
        fields = line.split()
        if not fields or fields[0] != 'cpu':
            continue
        numbers = [int(f) for f in fields[1:] if f.isdigit()]
        if len(numbers) < 8:
            return None
        total = sum(numbers[:8])
        steal = numbers[7]
        return dict(ticks=steal, total_ticks=total, percent=round(100.0 * steal / total, 2) if total else 0.0)
    return None


def nested_virtualization(params):
    """``{module: text of parameters/nested}`` -> (enabled, module), (None, None) without a KVM module."""
    for module in NESTED_MODULES:
        value = parse_bool_param(params.get(module))
        if value is not None:
            return value, module
    return None, None


# ---------------------------------------------------------------------------------------------
# reading the files


def _read(root, path):
    try:
        with open(os.path.join(root, path.lstrip('/')), encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except OSError:
        return None


def read_local_facts(root='/'):
    """Kernel facts of this machine read below ``root``. Missing files give None values."""
    flags = parse_cpu_flags(_read(root, '/proc/cpuinfo'))
    meminfo = parse_meminfo(_read(root, '/proc/meminfo'))
    ksm_files = {key: _read(root, '/sys/kernel/mm/ksm/%s' % key) for key in KSM_KEYS}
    nested, nested_module = nested_virtualization(
        {module: _read(root, '/sys/module/%s/parameters/nested' % module) for module in NESTED_MODULES}
    )
    groups_dir = os.path.join(root, 'sys/kernel/iommu_groups')
    try:
        iommu_groups = len(os.listdir(groups_dir))
    except OSError:
        iommu_groups = 0
    balancing = parse_int(_read(root, '/proc/sys/kernel/numa_balancing'))
    return dict(
        hw_virt_flags=hw_virt_flags(flags),
        kvm_device=os.path.exists(os.path.join(root, 'dev/kvm')),
        nested_virtualization=nested,
        nested_module=nested_module,
        ksm=ksm(ksm_files),
        numa_balancing=balancing,
        hugepages=hugepages(meminfo),
        swap=swap(meminfo),
        iommu=dict(enabled=iommu_groups > 0, groups=iommu_groups),
        steal_time=steal_time(_read(root, '/proc/stat')),
    )


# ---------------------------------------------------------------------------------------------
# libvirt's view


def version_string(number):
    """libvirt's packed version (major * 1000000 + minor * 1000 + release) as ``9.0.0``."""
    if number is None:
        return None
    return '%d.%d.%d' % (number // 1000000, (number // 1000) % 1000, number % 1000)


def cpu_facts(caps, info):
    """CPU model/vendor/topology from capabilities XML and ``getInfo()``."""
    topo = caps.find('host/cpu/topology')
    topology = {
        key: int(topo.get(key)) if topo is not None and (topo.get(key) or '').isdigit() else None
        for key in ('sockets', 'dies', 'cores', 'threads')
    }
    if topology['sockets'] is None and info:
        topology.update(sockets=info[5], cores=info[6], threads=info[7])
    return dict(
        arch=X.findtext(caps, 'host/cpu/arch') or (info[0] if info else None),
        model=X.findtext(caps, 'host/cpu/model'),
        vendor=X.findtext(caps, 'host/cpu/vendor'),
        logical_cpus=info[2] if info else None,
        mhz=info[3] if info else None,
        **topology,
    )


def numa_cells(caps, free_per_cell):
    """NUMA cells from capabilities: id, memory total (bytes), free (bytes, when known), cpu ids."""
    cells = []
    for index, cell in enumerate(caps.findall('host/topology/cells/cell')):
        memory = cell.find('memory')
        total = None
        if memory is not None and memory.text and memory.text.strip().isdigit():
            total = int(memory.text.strip()) * _unit(memory.get('unit', 'KiB'))
        cpus = [int(c.get('id')) for c in cell.findall('cpus/cpu') if (c.get('id') or '').isdigit()]
        free = free_per_cell[index] if free_per_cell and index < len(free_per_cell) else None
        cells.append(dict(id=int(cell.get('id', index)), memory_total=total, memory_free=free, cpus=cpus))
    return cells


def _unit(unit):
    try:
        return unit_factor(unit)
    except ValueError:
        return 1024


def assemble(conn_facts, local):
    """Combine libvirt's view with the local kernel facts (``local`` None for a remote URI: those
    keys are null)."""
    local = local or {}
    numa = dict(conn_facts['numa'])
    balancing = local.get('numa_balancing')
    numa['automatic_balancing'] = None if balancing is None else balancing != 0
    numa['automatic_balancing_mode'] = balancing
    cpu = dict(conn_facts['cpu'])
    cpu['hw_virt_flags'] = local.get('hw_virt_flags')
    facts = dict(conn_facts)
    facts.update(
        cpu=cpu,
        numa=numa,
        hw_virtualization=bool(local['hw_virt_flags']) if 'hw_virt_flags' in local else None,
        kvm_device=local.get('kvm_device'),
        nested_virtualization=local.get('nested_virtualization'),
        ksm=local.get('ksm'),
        hugepages=local.get('hugepages'),
        swap=local.get('swap'),
        iommu=local.get('iommu') or dict(enabled=None, groups=None),
        steal_time=local.get('steal_time'),
    )
    return facts


# libvirt error codes of a call a driver does not implement
OPTIONAL_CODES = (
    'VIR_ERR_NO_SUPPORT',
    'VIR_ERR_INVALID_ARG',
    'VIR_ERR_OPERATION_INVALID',
    'VIR_ERR_ARGUMENT_UNSUPPORTED',
)


class HostInfo(Manager):
    """The ``host_info`` module: read-only (a plan without steps; :meth:`report` reads the facts)."""

    facts_only = True

    def __init__(self, client, root='/'):
        super().__init__(client)
        self.root = root

    def plan(self):
        return Plan('host')

    def report(self, plan):
        local = self.client.is_local
        facts = assemble(self.conn_facts(), read_local_facts(self.root) if local else None)
        facts['local'] = local
        return dict(host=facts)

    def _optional(self, method, *args):
        """Calls some drivers do not implement: None instead of a failure."""
        try:
            return self.client.call(method, *args, what='host information (%s)' % method)
        except LibvirtModuleError as exc:
            codes = {getattr(self.libvirt, name, None) for name in OPTIONAL_CODES} - {None}
            if exc.details.get('libvirt_code') in codes:
                return None
            raise

    def conn_facts(self):
        lv = self.libvirt
        call = self.client.call
        caps = X.parse(call('getCapabilities', what='host capabilities'))
        info = call('getInfo', what='host information')
        cells = caps.findall('host/topology/cells/cell')
        ncells = len(cells) or (info[4] if info else 0)
        free_cells = self._optional('getCellsFreeMemory', 0, ncells) if ncells else None
        # one source for total and free (the kernel's meminfo, in KiB), else node info
        stats = self._optional('getMemoryStats', getattr(lv, 'VIR_NODE_MEMORY_STATS_ALL_CELLS', -1), 0) or {}
        if 'total' in stats and 'free' in stats:
            memory = {key: stats[key] * 1024 for key in ('total', 'free', 'buffers', 'cached') if key in stats}
        else:
            memory = dict(total=info[1] * 1024 * 1024 if info else None, free=self._optional('getFreeMemory'))
        hv_version = self._optional('getVersion')
        lib_version = call('getLibVersion', what='libvirt version')
        guests = dict(
            running=len(call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE, what='guests')),
            inactive=len(call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_INACTIVE, what='guests')),
            persistent=len(call('listAllDomains', lv.VIR_CONNECT_LIST_DOMAINS_PERSISTENT, what='guests')),
        )
        guests['total'] = guests['running'] + guests['inactive']
        numa_cells_list = numa_cells(caps, free_cells)
        return dict(
            uri=self.client.uri,
            hostname=self._optional('getHostname'),
            virt_type=host_domain_type(self.client),
            virt_types_available=domain_types_available(self.client, caps=caps),
            hypervisor=dict(
                type=self._optional('getType'), version=version_string(hv_version), version_number=hv_version
            ),
            libvirt=dict(version=version_string(lib_version), version_number=lib_version),
            cpu=cpu_facts(caps, info),
            memory=memory,
            numa=dict(nodes=len(numa_cells_list) or ncells, cells=numa_cells_list),
            guests=guests,
        )
