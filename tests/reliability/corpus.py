# SPDX-License-Identifier: GPL-3.0-or-later
"""A corpus of domain definitions nobody here wrote: ``virt-install --print-xml --dry-run`` over
a matrix of machine types, firmware, devices and ``--osinfo`` variants, against this machine's
``qemu:///system``.

Used by tests/reliability/test_corpus.py; also a command line tool that leaves the corpus in a
directory for manual bug hunting::

    python tests/reliability/corpus.py --out /tmp/virtops-corpus

Nothing here starts a guest or sends traffic anywhere: NICs are ``type=user`` or an isolated
network without a host IP that :func:`prepare` creates, disks are small sparse files in a
directory pool that :func:`prepare` creates (virt-install would otherwise create a storage pool
of its own for an unmanaged directory, even with ``--dry-run``), and :func:`teardown` removes
all of it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

VIRT_INSTALL = shutil.which('virt-install') or '/usr/bin/virt-install'
URI = 'qemu:///system'
IMAGES = Path('/var/lib/libvirt/images')
SIZE = 68  # entries (the issue asks for >= 60)

OSINFO = (
    'debian11',
    'fedora37',
    'rhel9.0',
    'ubuntu22.04',
    'win10',
    'win11',
    'win2k19',
    'alpinelinux3.17',
    'freebsd13.1',
    'centos-stream9',
    'opensuse15.4',
    'win2k22',
    'linux2022',
    'archlinux',
    'rocky9.0',
    'win2k16',
)
FIRMWARE = ('bios', 'uefi', 'secboot')
BUSES = ('virtio', 'scsi', 'sata', 'ide', 'none')
NICS = ('none', 'user-virtio', 'user-e1000', 'user-e1000e', 'user-rtl8139', 'iso-virtio', 'multi')
GRAPHICS = ('none', 'vnc', 'spice')
VIDEO = ('dflt', 'virtio', 'qxl', 'vga', 'bochs', 'cirrus', 'none')
# features added two at a time; (label, machine -> args); NUMA, iotune and the virt type are
# handled in entries() because they change other arguments
EXTRAS = (
    'tpm-crb',
    'cdrom-empty',
    'console',
    'sound-ich9',
    'watchdog',
    'rng',
    'balloon-none',
    'cpu-hostmodel',
    'numa',
    'hugepages',
    'nosharepages',
    'iotune',
    'cdrom-media',
    'serial',
    'spicevmc',
    'tpm-tis',
    'sound-ac97',
    'cpu-custom',
    'kvm',
    'iothreads',
    'vsock',
    'panic',
    'tablet',
    'events',
    'cpu-passthrough',
    'metadata',
    'balloon-autodeflate',
    'guest-agent',
    'redirdev',
    'bootmenu',
    'memory-1g',
)


def _extra_args(extra, ctx):
    """virt-install arguments of one extra feature (``ctx``: machine, files, network)."""
    q35 = ctx['machine'] == 'q35'
    cd_bus = 'sata' if q35 else 'ide'
    table = {
        'tpm-crb': ['--tpm', 'emulator,model=tpm-crb,version=2.0'],
        'tpm-tis': ['--tpm', 'emulator,model=tpm-tis,version=2.0'],
        'cdrom-empty': ['--disk', 'device=cdrom,bus=%s' % cd_bus],
        'cdrom-media': ['--disk', 'path=%s,device=cdrom,bus=%s' % (ctx['iso'], cd_bus)],
        'console': ['--console', 'pty,target.type=virtio'],
        'serial': ['--serial', 'pty', '--serial', 'unix,path=/run/%sserial.sock,mode=bind' % ctx['name']],
        'spicevmc': ['--channel', 'spicevmc'],
        'guest-agent': ['--channel', 'unix,target.type=virtio,target.name=org.qemu.guest_agent.0'],
        'sound-ich9': ['--sound', 'ich9' if q35 else 'ich6'],
        'sound-ac97': ['--sound', 'ac97'],
        'watchdog': ['--watchdog', ('itco' if q35 else 'i6300esb') + ',action=reset'],
        'rng': ['--rng', '/dev/urandom'],
        'balloon-none': ['--memballoon', 'none'],
        'balloon-autodeflate': ['--memballoon', 'virtio,autodeflate=on'],
        'cpu-hostmodel': ['--cpu', 'host-model'],
        'cpu-custom': ['--cpu', 'Nehalem,+x2apic,-vmx'],
        'cpu-passthrough': ['--cpu', 'host-passthrough'],
        'hugepages': ['--memorybacking', 'hugepages=on'],
        'nosharepages': ['--memorybacking', 'nosharepages=on'],
        'iothreads': ['--iothreads', '2'],
        'vsock': ['--vsock', 'cid.auto=yes'],
        'panic': ['--panic', 'default'],
        'tablet': ['--input', 'tablet'],
        'events': ['--events', 'on_crash=restart,on_poweroff=destroy'],
        'metadata': ['--metadata', 'title=corpus %s,description=written by virt-install' % ctx['label']],
        'redirdev': ['--redirdev', 'usb,type=spicevmc'],
        'bootmenu': ['--boot', 'menu=on'],
        'numa': [],
        'iotune': [],
        'kvm': [],
        'memory-1g': [],
    }
    return table[extra]


def _nic_args(nic, network, mac):
    if nic == 'none':
        return ['--network', 'none']
    if nic == 'multi':
        return [
            '--network',
            'type=user,model=virtio',
            '--network',
            'network=%s,model=e1000e' % network,
            '--network',
            'type=user,model=rtl8139,mac=%s' % mac,
        ]
    kind, model = nic.split('-')
    if kind == 'user':
        return ['--network', 'type=user,model=%s' % model]
    return ['--network', 'network=%s,model=%s' % (network, model)]


def entries(prefix, disk_dir, network, size=SIZE):
    """The matrix: a list of dicts (name, label, machine, virt_type, osinfo, args, files).

    Axes are cycled with different periods so that every value of every axis appears several
    times and in varied company; the combination is deterministic (same list on every run).
    """
    out = []
    for i in range(size):
        num = i + 1
        machine = ('pc', 'q35')[i % 2]
        firmware = FIRMWARE[(i // 2) % 3]
        osinfo = OSINFO[i % len(OSINFO)]
        bus = BUSES[(i // 3) % len(BUSES)]
        if bus == 'ide' and machine == 'q35':
            bus = 'sata'  # q35 has no IDE controller
        nic = NICS[i % len(NICS)]
        graphics = GRAPHICS[(i // 4) % len(GRAPHICS)]
        video = VIDEO[(i * 3) % len(VIDEO)]
        extras = sorted({EXTRAS[i % len(EXTRAS)], EXTRAS[(i * 7 + 11) % len(EXTRAS)]})
        if {'spicevmc', 'redirdev'} & set(extras):
            graphics = 'spice'  # libvirt refuses a spicevmc chardev without SPICE graphics
        if firmware == 'secboot' and machine == 'pc':
            firmware = 'uefi'  # secure boot needs SMM, q35 only
        label = '-'.join([machine, firmware, bus, graphics, *extras])
        label = re.sub(r'[^a-z0-9-]', '', label)[:48].rstrip('-')
        name = '%sc%02d-%s' % (prefix, num, label)
        vcpus = 2 if 'numa' in extras else 1
        memory = 1024 if 'memory-1g' in extras else 256
        virt_type = 'kvm' if 'kvm' in extras else 'qemu'
        disk = os.path.join(disk_dir, '%sc%02d-d0.img' % (prefix, num))
        ctx = dict(machine=machine, iso=os.path.join(disk_dir, prefix + 'media.iso'), name=name, label=label)
        args = ['--name', name, '--osinfo', osinfo, '--memory', str(memory), '--import', '--noautoconsole']
        args += ['--machine', machine]
        if virt_type == 'qemu':
            args += ['--virt-type', 'qemu']
        if 'numa' in extras:
            cells = 'cell0.cpus=0,cell0.memory=131072,cell1.cpus=1,cell1.memory=131072'
            args += ['--vcpus', '2', '--cpu', 'qemu64,' + cells]
        else:
            args += ['--vcpus', str(vcpus)]
        if firmware == 'uefi':
            args += ['--boot', 'uefi']
        elif firmware == 'secboot':
            args += ['--boot', 'firmware=efi,firmware.feature0.name=secure-boot,firmware.feature0.enabled=yes']
        files = []
        if bus == 'none' and 'iotune' not in extras:
            args += ['--disk', 'none']
        else:
            disk_bus = 'virtio' if bus == 'none' else bus
            spec = 'path=%s,bus=%s' % (disk, disk_bus)
            if 'iotune' in extras:
                spec += ',iotune.total_bytes_sec=10485760,iotune.total_iops_sec=500'
            args += ['--disk', spec]
            files.append(disk)
        # a fixed MAC (as people write them), unique per session and entry: virt-install refuses a
        # MAC another guest uses
        seed = int(hashlib.sha256(prefix.encode()).hexdigest()[:4], 16)
        mac = '52:54:00:%02x:%02x:%02x' % (seed >> 8, seed & 0xFF, num)
        args += _nic_args(nic, network, mac)
        if graphics == 'none':
            args += ['--graphics', 'none']
        else:
            args += ['--graphics', '%s,listen=127.0.0.1' % graphics]
        if video != 'dflt':
            args += ['--video', video]
        for extra in extras:
            if extra.startswith('cpu-') and 'numa' in extras:
                continue
            args += _extra_args(extra, ctx)
        out.append(
            dict(
                num=num,
                name=name,
                label=label,
                machine=machine,
                firmware=firmware,
                virt_type=virt_type,
                osinfo=osinfo,
                memory_mib=memory,
                vcpus=vcpus,
                numa='numa' in extras,
                bus=bus,
                nic=nic,
                graphics=graphics,
                video=video,
                extras=extras,
                args=args,
                files=files,
            )
        )
    return out


def virt_install(args, dry_run=True, timeout=300):
    """Run virt-install against qemu:///system; returns (rc, stdout, stderr)."""
    cmd = [VIRT_INSTALL, '--connect', URI]
    if dry_run:
        cmd += ['--print-xml', '--dry-run']
    else:
        cmd += ['--noreboot']  # with --import: define only, never start
    proc = subprocess.run(
        cmd + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=dict(os.environ, LANG='C.UTF-8', LC_ALL='C.UTF-8'),
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _reason(stderr):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    for line in lines:
        if line.startswith('ERROR'):
            return line
    return lines[-1] if lines else 'no output'


def generate(items, out_dir, workers=2):
    """Run virt-install --print-xml --dry-run for every entry (``workers`` at a time), write
    ``<out_dir>/<name>.xml`` and ``<out_dir>/index.json``; returns the index (entries with
    ``xml`` (text or None) and ``error``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(entry):
        rc, stdout, stderr = virt_install(entry['args'])
        entry = dict(entry)
        if rc == 0 and stdout.lstrip().startswith('<domain'):
            entry['xml'] = stdout
            entry['error'] = None
            (out_dir / (entry['name'] + '.xml')).write_text(stdout)
        else:
            entry['xml'] = None
            entry['error'] = _reason(stderr)
        return entry

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        index = list(pool.map(one, items))
    listing = [
        {k: v for k, v in e.items() if k != 'xml'} | {'file': e['name'] + '.xml' if e['xml'] else None} for e in index
    ]
    (out_dir / 'index.json').write_text(json.dumps(listing, indent=1))
    return index


# ---------------------------------------------------------------------------------------------
# the resources the corpus refers to


def resources(prefix):
    """Names of what the corpus refers to: a dict for :func:`prepare`, :func:`entries` and :func:`teardown`."""
    return dict(disk_dir=str(IMAGES / (prefix + 'corpus')), pool=prefix + 'corpus', network=prefix + 'corpus-net')


def prepare(conn, res):
    """Create the directory pool (for the disk files and an ISO) and the isolated network the
    corpus refers to."""
    disk_dir = Path(res['disk_dir'])
    pool_name, net_name = res['pool'], res['network']
    disk_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    pool = conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (pool_name, disk_dir), 0
    )
    pool.create(0)
    # isolated: no <forward>, no <ip>: the host has no address on it, nothing is routed
    net = conn.networkDefineXML('<network><name>%s</name></network>' % net_name)
    net.create()


def make_files(res, items, prefix):
    """The sparse disk files and the ISO the entries refer to (virt-install looks them up)."""
    paths = {os.path.join(res['disk_dir'], prefix + 'media.iso')}
    for entry in items:
        paths.update(entry['files'])
    for path in sorted(paths):
        with open(path, 'wb') as handle:
            handle.truncate(1024 * 1024)


def refresh(conn, res):
    conn.storagePoolLookupByName(res['pool']).refresh(0)


def teardown(conn, res, keep_files=False):
    import libvirt

    for kind, lookup in (('pool', conn.storagePoolLookupByName), ('network', conn.networkLookupByName)):
        try:
            obj = lookup(res[kind])
        except libvirt.libvirtError:
            continue
        try:
            if obj.isActive():
                obj.destroy()
            obj.undefine()
        except libvirt.libvirtError:
            pass
    if not keep_files:
        shutil.rmtree(res['disk_dir'], ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--out', default='/tmp/virtops-corpus')
    parser.add_argument('--prefix', default=None, help='name prefix (default: a fresh vtest-<hex>- prefix)')
    parser.add_argument('--size', type=int, default=SIZE)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args(argv)
    import uuid

    import libvirt

    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    prefix = args.prefix or 'vtest-%s-' % uuid.uuid4().hex[:6]
    conn = libvirt.open(URI)
    res = resources(prefix)
    try:
        prepare(conn, res)
        items = entries(prefix, res['disk_dir'], res['network'], args.size)
        make_files(res, items, prefix)
        refresh(conn, res)
        index = generate(items, args.out, args.workers)
    finally:
        # the disk files stay (the XMLs refer to them); the pool and network go
        teardown(conn, res, keep_files=True)
        conn.close()
    good = sum(1 for e in index if e['xml'])
    print('%d entries, %d XMLs written to %s' % (len(index), good, args.out))
    for entry in index:
        if not entry['xml']:
            print('virt-install refused %s: %s' % (entry['name'], entry['error']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
