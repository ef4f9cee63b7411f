# SPDX-License-Identifier: GPL-3.0-or-later
"""Hypothesis strategies for valid typed ``guest`` options (the module's arguments, with optional
parts left out), shared by tests/unit/test_domain_property.py (spec -> XML, many examples) and
tests/reliability/test_typed_property.py (the real module against qemu:///system).

``Resources`` names what a spec may refer to: file paths (a qcow2 and a raw image, an ISO), a
pool with a disk volume and an ISO volume, an isolated network, a kernel and an initrd. The
strategies only produce combinations libvirt accepts for a guest that is defined (not started)
under TCG: no IDE on q35, no CD-ROM on virtio, no read-only SATA/IDE hard disk, ``io: native``
only with ``cache: none|directsync``, a CPU topology that matches the maximum vCPUs, no
``boot.order`` together with per-device ``boot_order``, total and read/write I/O limits not mixed,
Secure Boot on q35 only and never with BIOS firmware, an emulated TPM 2.0 (swtpm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

PC_MACHINES = ('pc', 'pc-i440fx-7.2')
Q35_MACHINES = ('q35', 'pc-q35-7.2', 'pc-q35-5.2')
NIC_MODELS = ('virtio', 'e1000', 'e1000e', 'rtl8139')
CPU_MODELS = ('qemu64', 'Nehalem', 'Westmere', 'Haswell-noTSX')


@dataclass
class Resources:
    """What generated specs may use; the defaults are names only (pure unit tests)."""

    qcow2_path: str = '/var/lib/libvirt/images/prop-disk.qcow2'
    raw_path: str = '/var/lib/libvirt/images/prop-disk.img'
    iso_path: str = '/var/lib/libvirt/images/prop-cd.iso'
    pool: str = 'prop-pool'
    pool_volumes: dict = field(
        default_factory=lambda: {'disk': ('prop-vol.qcow2', 'qcow2'), 'iso': ('prop.iso', 'raw')}
    )
    network: str = 'prop-net'
    kernel: str = '/var/lib/libvirt/images/virtops-test/vmlinuz'
    initrd: str = '/var/lib/libvirt/images/virtops-test/initrd.img'
    serial_log: str = '/var/log/libvirt/qemu/prop-serial.log'


# text libvirt keeps verbatim: printable, XML metacharacters included, no newline in a title
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=('Cc', 'Cs', 'Zl', 'Zp', 'Co'), blacklist_characters='\ufeff'),
    min_size=1,
    max_size=30,
)


def _maybe(draw, out, key, strategy):
    """Put a drawn value under ``key`` or leave the option out."""
    if draw(st.booleans()):
        out[key] = draw(strategy)


def _memory_value(draw, mib):
    form = draw(st.sampled_from(('int', 'MiB', 'KiB', 'M', 'GiB')))
    if form == 'GiB' and mib % 1024 == 0:
        return '%dGiB' % (mib // 1024)
    if form == 'int':
        return mib
    if form == 'KiB':
        return '%dKiB' % (mib * 1024)
    if form == 'M':
        return '%dM' % mib
    return '%d MiB' % mib if draw(st.booleans()) else '%dMiB' % mib


def _iotune(draw):
    tune = {}
    for total, pair in (('total_bytes_sec', ('read_bytes_sec', 'write_bytes_sec')),
                        ('total_iops_sec', ('read_iops_sec', 'write_iops_sec'))):  # fmt: skip
        kind = draw(st.sampled_from(('none', 'total', 'pair')))
        values = st.integers(1, 10**9) if 'bytes' in total else st.integers(1, 100000)
        if kind == 'total':
            tune[total] = draw(values)
        elif kind == 'pair':
            for key in pair:
                _maybe(draw, tune, key, values)
    return tune


def _disk(draw, res, target, bus):
    """One disk entry (without boot_order)."""
    disk = {'target': target}
    kinds = ['file', 'pool'] if bus == 'virtio' else ['file', 'pool', 'cdrom_empty', 'cdrom_iso', 'cdrom_pool']
    kind = draw(st.sampled_from(kinds))
    if draw(st.booleans()) or bus != {'vd': 'virtio', 'hd': 'ide', 'sd': 'scsi'}[target[:2]]:
        disk['bus'] = bus
    if kind == 'file':
        path, fmt = draw(st.sampled_from(((res.qcow2_path, 'qcow2'), (res.raw_path, 'raw'))))
        disk['path'] = path
        _maybe(draw, disk, 'format', st.just(fmt))
        if draw(st.booleans()):
            disk['device'] = 'disk'
    elif kind == 'pool':
        vol, fmt = res.pool_volumes['disk']
        disk.update(pool=res.pool, volume=vol)
        _maybe(draw, disk, 'format', st.just(fmt))
    else:
        disk['device'] = 'cdrom'
        if kind == 'cdrom_iso':
            disk['path'] = res.iso_path
            _maybe(draw, disk, 'format', st.just('raw'))
        elif kind == 'cdrom_pool':
            vol, _fmt = res.pool_volumes['iso']
            disk.update(pool=res.pool, volume=vol)
    cdrom = disk.get('device') == 'cdrom'
    if cdrom or bus in ('virtio', 'scsi'):
        _maybe(draw, disk, 'readonly', st.booleans())
    elif draw(st.booleans()):
        disk['readonly'] = False
    cache = draw(st.sampled_from((None, 'default', 'none', 'writethrough', 'writeback', 'directsync', 'unsafe')))
    if cache:
        disk['cache'] = cache
    io = draw(st.sampled_from((None, 'threads', 'io_uring') + (('native',) if cache in ('none', 'directsync') else ())))
    if io:
        disk['io'] = io
    _maybe(draw, disk, 'discard', st.sampled_from(('ignore', 'unmap')))
    _maybe(draw, disk, 'serial', st.text(alphabet='ABCDEFGHJKLMNPQRSTUVWXYZ0123456789', min_size=1, max_size=20))
    if draw(st.booleans()):
        tune = _iotune(draw)
        if tune or draw(st.booleans()):
            disk['iotune'] = tune
    return disk


def _disks(draw, res, ide_ok):
    buses = ['virtio', 'sata', 'scsi'] + (['ide'] if ide_ok else [])
    count = draw(st.integers(0, 4))
    used = {'vd': 0, 'sd': 0, 'hd': 0}
    disks = []
    for _index in range(count):
        bus = draw(st.sampled_from(buses))
        prefix = {'virtio': 'vd', 'ide': 'hd'}.get(bus, 'sd')
        if prefix == 'hd' and used['hd'] >= 4:
            continue
        target = prefix + 'abcdefgh'[used[prefix]]
        used[prefix] += 1
        disks.append(_disk(draw, res, target, bus))
    return disks


def _interfaces(draw, res):
    nics = []
    macs = set()
    for _index in range(draw(st.integers(0, 2))):
        nic = {}
        if res.network and draw(st.booleans()):
            nic['source'] = res.network
            if draw(st.booleans()):
                nic['type'] = 'network'
        else:
            nic['type'] = 'user'
        _maybe(draw, nic, 'model', st.sampled_from(NIC_MODELS))
        if draw(st.booleans()):
            mac = '52:54:00:%02x:%02x:%02x' % tuple(draw(st.integers(0, 255)) for _byte in range(3))
            if mac not in macs:
                macs.add(mac)
                nic['mac'] = mac.upper() if draw(st.booleans()) else mac
        nics.append(nic)
    return nics


def _cpu_and_vcpus(draw, args):
    max_vcpus = draw(st.integers(1, 8))
    vcpus = draw(st.integers(1, max_vcpus))
    form = draw(st.sampled_from(('none', 'vcpus', 'max', 'both')))
    if form == 'vcpus':
        args['vcpus'] = max_vcpus = vcpus
    elif form == 'max':
        args['max_vcpus'] = max_vcpus
        vcpus = 1
    elif form == 'both':
        args['vcpus'], args['max_vcpus'] = vcpus, max_vcpus
    else:
        max_vcpus = 1
    if not draw(st.booleans()):
        return
    cpu = {}
    mode = draw(st.sampled_from((None, 'host-model', 'host-passthrough', 'maximum', 'custom')))
    if mode == 'custom' or (mode is None and draw(st.booleans())):
        cpu['model'] = draw(st.sampled_from(CPU_MODELS))
    if mode:
        cpu['mode'] = mode
    if mode == 'host-passthrough':
        _maybe(draw, cpu, 'migratable', st.booleans())
    if draw(st.booleans()):
        # sockets * dies * cores * threads == the maximum vCPUs; factors of 1 may be left out
        factors = {'sockets': 1, 'dies': 1, 'cores': 1, 'threads': 1}
        rest = max_vcpus
        for key in ('threads', 'cores', 'dies'):
            divisors = [d for d in (1, 2, 4) if rest % d == 0]
            factors[key] = draw(st.sampled_from(divisors))
            rest //= factors[key]
        factors['sockets'] = rest
        topo = {key: value for key, value in factors.items() if value != 1 or draw(st.booleans())}
        cpu['topology'] = topo
    if cpu or draw(st.booleans()):
        args['cpu'] = cpu


@st.composite
def guest_args(draw, res=None, name='prop-guest', machines=None):
    """Arguments of the ``guest`` module (typed options, ``state: present``); ``machines``: the
    machine types to choose from (the guest's family when it exists already)."""
    res = res or Resources()
    args = {'name': name, 'state': 'present'}
    if draw(st.booleans()):
        args['domain_type'] = 'qemu'
    machine = draw(st.sampled_from((None,) + tuple(machines or PC_MACHINES + Q35_MACHINES)))
    q35 = machine in Q35_MACHINES or (machines is not None and set(machines) <= set(Q35_MACHINES))
    if machine:
        args['machine'] = machine
    if draw(st.booleans()):
        args['arch'] = 'x86_64'
    if draw(st.booleans()):
        args['os_type'] = 'hvm'
    mem_mib = draw(st.sampled_from((128, 256, 300, 512, 1024, 2048)))
    if draw(st.booleans()):
        args['memory'] = _memory_value(draw, mem_mib)
    else:
        mem_mib = 512  # the module's creation default
    if draw(st.booleans()):
        args['current_memory'] = _memory_value(
            draw, draw(st.sampled_from([m for m in (64, 128, 200, 256) if m <= mem_mib]))
        )
    _cpu_and_vcpus(draw, args)
    _maybe(draw, args, 'firmware', st.sampled_from(('bios', 'efi')))
    if q35 and draw(st.booleans()):
        # Secure Boot needs SMM, which QEMU has on q35 only, and UEFI firmware
        secure = draw(st.sampled_from((True, False)))
        if not (secure and args.get('firmware') == 'bios'):
            args['secure_boot'] = secure
            if secure:
                _maybe(draw, args, 'enrolled_keys', st.sampled_from((True, False)))
    if draw(st.booleans()):
        tpm = {}
        _maybe(draw, tpm, 'model', st.sampled_from(('tpm-crb', 'tpm-tis')))
        _maybe(draw, tpm, 'version', st.just('2.0'))
        if draw(st.integers(0, 3)) == 0:
            tpm['state'] = 'absent'
        args['tpm'] = tpm
    disks = _disks(draw, res, ide_ok=not q35)
    nics = _interfaces(draw, res)
    if disks or draw(st.booleans()):
        args['disks'] = disks
    if nics or draw(st.booleans()):
        args['interfaces'] = nics
    # per-device boot order or <os><boot>, never both
    devices = disks + nics
    per_device = devices and draw(st.booleans())
    if per_device:
        chosen = [dev for dev in devices if draw(st.booleans())]
        orders = draw(st.permutations(range(1, len(chosen) + 1)))
        for dev, order in zip(chosen, orders):
            dev['boot_order'] = order
    if draw(st.booleans()):
        boot = {}
        if not per_device:
            _maybe(draw, boot, 'order', st.lists(st.sampled_from(('hd', 'cdrom', 'network', 'fd')), unique=True))
        if draw(st.booleans()):
            boot['kernel'] = res.kernel
            _maybe(draw, boot, 'initrd', st.just(res.initrd))
            _maybe(draw, boot, 'cmdline', st.sampled_from(('console=ttyS0', 'console=ttyS0 quiet', 'ro root=/dev/vda')))
        _maybe(draw, boot, 'menu', st.booleans())
        args['boot'] = boot
    _maybe(draw, args, 'guest_agent', st.booleans())
    serial = draw(st.sampled_from((None, 'default', 'pty', 'none', 'file')))
    if serial == 'default':
        args['serial'] = {}
    elif serial == 'file':
        args['serial'] = {'type': 'file', 'path': res.serial_log}
    elif serial:
        args['serial'] = {'type': serial}
    _maybe(draw, args, 'graphics', st.sampled_from(('none', 'vnc', 'spice')))
    _maybe(draw, args, 'video', st.sampled_from(('none', 'virtio', 'qxl', 'vga', 'cirrus', 'bochs')))
    _maybe(draw, args, 'rng', st.booleans())
    _maybe(draw, args, 'balloon', st.booleans())
    if draw(st.booleans()):
        backing = {}
        _maybe(draw, backing, 'nosharepages', st.booleans())
        if draw(st.booleans()):
            backing['hugepages'] = False
        args['memory_backing'] = backing
    seclabel = draw(st.sampled_from((None, 'none', 'dynamic', 'dynamic-dac', 'static-dac')))
    if seclabel == 'none':
        args['seclabel'] = {'type': 'none'}
    elif seclabel == 'dynamic':
        args['seclabel'] = {}
    elif seclabel == 'dynamic-dac':
        args['seclabel'] = {'type': 'dynamic', 'model': 'dac'}
    elif seclabel == 'static-dac':
        args['seclabel'] = {'type': 'static', 'model': 'dac', 'label': '+64055:+64055'}
        _maybe(draw, args['seclabel'], 'relabel', st.booleans())
    _maybe(draw, args, 'title', _TEXT)
    _maybe(draw, args, 'description', _TEXT | st.just('line one\nline two'))
    return args


def module_params(args, argument_spec):
    """``args`` as the module sees them: every option present, suboptions filled with their
    defaults or None (what AnsibleModule's validation does)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    result = ArgumentSpecValidator(argument_spec).validate(dict(args))
    if result.error_messages:
        raise AssertionError('generated arguments are invalid: %s' % result.error_messages)
    return result.validated_parameters
