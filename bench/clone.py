# SPDX-License-Identifier: GPL-3.0-or-later
"""``guest clone_from``: the time of one create-by-clone task, linked and full, against the
idempotent re-run of the same task, with a source disk holding ``--data-mib`` MiB of real data.

Standalone (not a part of ``make bench``): run it with the test venv, which has the tests' module
runner (``tests/virtops_helpers.run_module``: the payload Ansible builds, run as a task runs it):

    $VIRTOPS_VENV/bin/python bench/clone.py [--data-mib 256] [--reps 3]

Everything is named ``vbench-clone<id>-*`` (a pool of its own under /var/lib/libvirt/images) and
removed in a ``finally``. The source is defined, never started; nothing boots.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
from virtops_helpers import run_module

libvirt.registerErrorHandler(lambda ctx, err: None, None)


def timed(args):
    start = time.monotonic()
    result = run_module('guest', args)
    seconds = time.monotonic() - start
    assert not result.get('failed'), result.get('msg')
    return seconds, result['changed']


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-mib', type=int, default=256)
    parser.add_argument('--reps', type=int, default=3)
    opts = parser.parse_args()
    prefix = 'vbench-clone%s-' % uuid.uuid4().hex[:6]
    conn = libvirt.open('qemu:///system')
    pool_dir = Path('/var/lib/libvirt/images') / (prefix + 'pool')
    pool_dir.mkdir()
    pool = conn.storagePoolCreateXML(
        "<pool type='dir'><name>%spool</name><target><path>%s</path></target></pool>" % (prefix, pool_dir), 0
    )
    try:
        src_file = pool_dir / 'src.qcow2'
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(src_file), '4G'], check=True)
        # allocated data (a byte pattern) at the start of the disk: what a full copy has to copy
        subprocess.run(
            ['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 %dM' % opts.data_mib, str(src_file)],
            check=True,
            capture_output=True,
        )
        pool.refresh(0)
        source = prefix + 'src'
        ok = run_module(
            'guest',
            dict(name=source, memory='128MiB', disks=[dict(target='vda', pool=prefix + 'pool', volume='src.qcow2')]),
        )
        assert not ok.get('failed'), ok.get('msg')
        rows = {}
        for mode in ('linked', 'full'):
            create, rerun = [], []
            for rep in range(opts.reps):
                name = '%s%s%d' % (prefix, mode, rep)
                args = dict(name=name, clone_from=dict(guest=source, mode=mode))
                seconds, changed = timed(args)
                assert changed
                create.append(seconds)
                seconds, changed = timed(args)
                assert not changed
                rerun.append(seconds)
                timed(dict(name=name, state='absent', delete_volumes=True))
            rows[mode] = (statistics.median(create), statistics.median(rerun))
        print('source disk: qcow2, 4 GiB virtual, %d MiB of data; %d runs each (median)' % (opts.data_mib, opts.reps))
        print('| mode | create-by-clone task | re-run (unchanged) |')
        print('| --- | --- | --- |')
        for mode, (create, rerun) in rows.items():
            print('| %s | %.2f s | %.2f s |' % (mode, create, rerun))
    finally:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                dom.undefine()
        pool.destroy()
        shutil.rmtree(pool_dir, ignore_errors=True)
        conn.close()
    return 0


if __name__ == '__main__':
    if os.geteuid() != 0:
        sys.exit('run as root (qemu:///system)')
    sys.exit(main())
