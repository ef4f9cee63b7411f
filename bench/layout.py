# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Two revisions of the collection side by side: payload size and per-task time of each module.

A change of the code's layout must not make a task slower or its payload bigger. For each
revision (default: ``--base`` and the working tree) this builds the real AnsiballZ payload of an
idempotent task of every module (``ANSIBLE_KEEP_REMOTE_FILES``), then runs the payloads
interleaved, ``--runs`` times each, and prints the median wall and CPU time, the payload zip size
and the number of collection files in it, with the ratio new/base. With ``--control`` a second,
separately built copy of the base runs in the same rounds: its ratio to the base is the noise of
that run (the same code measured twice), the yardstick for new/base. The objects the tasks
re-converge (a dir pool, a volume, a defined guest, an inactive isolated network) are created
first under a unique ``vlay-`` prefix and removed at the end, also on failure.

    $VENV/bin/python bench/layout.py --base 52d65ad [--runs 15]

Run as root on a host with libvirtd (``make setup``). It prints a table; nothing asserts on it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URI = 'qemu:///system'


def tree(rev, work, label):
    """A collection tree of ``rev`` (None: the working tree) under ``work``; returns its collections path."""
    base = work / label
    dest = base / 'ansible_collections' / 'virtops' / 'libvirt'
    dest.mkdir(parents=True)
    if rev:
        archive = subprocess.run(['git', 'archive', rev], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(['tar', '-x', '-C', str(dest)], input=archive, check=True)
    else:
        for name in ('plugins', 'meta', 'galaxy.yml'):
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name)
            else:
                shutil.copy(src, dest / name)
    return base


def tasks(prefix, workdir):
    pool, net, guest = prefix + 'pool', prefix + 'net', prefix + 'guest'
    target = str(workdir / 'pool')
    return {
        'host_info': ('host_info', {}),
        'guest_info': ('guest_info', dict(name=guest)),
        'storage_pool_info': ('storage_pool_info', dict(name=pool)),
        'hostdev_info': ('hostdev_info', {}),
        'storage_pool': ('storage_pool', dict(name=pool, type='dir', target=target, state='active')),
        'volume': ('volume', dict(pool=pool, name='vol.qcow2', capacity='64MiB', format='qcow2')),
        'network': ('network', dict(name=net, state='inactive')),
        'guest': (
            'guest',
            dict(
                name=guest,
                state='present',
                memory='256MiB',
                vcpus=1,
                disks=[dict(target='vda', pool=pool, volume='vol.qcow2')],
            ),
        ),
    }


def adhoc(coll, module, args, env_extra=None, check=False):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(coll))
    env.update(ANSIBLE_LOCALHOST_WARNING='0', ANSIBLE_INVENTORY_UNPARSED_WARNING='0')
    env.update(env_extra or {})
    args = dict(args, uri=URI)
    cmd = [
        str(Path(sys.executable).parent / 'ansible'),
        'localhost',
        '-o',
        '-c',
        'local',
        '-m',
        'virtops.libvirt.' + module,
        '-a',
        json.dumps(args),
    ]
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    try:
        result = json.loads(proc.stdout.split('=> ', 1)[1])
    except (ValueError, IndexError):
        raise SystemExit('%s failed:\n%s\n%s' % (module, proc.stdout[-2000:], proc.stderr[-2000:])) from None
    if result.get('failed'):
        raise SystemExit('%s failed: %s' % (module, result.get('msg')))
    return result


def keep_payload(coll, module, args, keep):
    """Run the task once with KEEP_REMOTE_FILES and return the path of its AnsiballZ payload."""
    before = set(keep.glob('ansible-tmp-*'))
    adhoc(coll, module, args, dict(ANSIBLE_KEEP_REMOTE_FILES='1', ANSIBLE_PIPELINING='0', ANSIBLE_REMOTE_TMP=str(keep)))
    new = [d for d in keep.glob('ansible-tmp-*') if d not in before]
    files = [f for d in new for f in d.glob('AnsiballZ_*.py')]
    if len(files) != 1:
        raise SystemExit('expected one payload for %s, found %d' % (module, len(files)))
    return files[0]


def zip_facts(payload):
    text = payload.read_text()
    blob = re.search(r"zip_data ?= ?'([A-Za-z0-9+/=]+)'", text)
    if not blob:
        return None, None
    data = base64.b64decode(blob.group(1))
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    ours = [n for n in names if n.startswith('ansible_collections/virtops/') and n.endswith('.py')]
    return len(data), len(ours)


def time_run(payload):
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, str(payload)], capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - start
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0 or json.loads(proc.stdout or '{}').get('changed'):
        raise SystemExit('%s: not an idempotent re-run: rc=%s %s' % (payload, proc.returncode, proc.stdout[-500:]))
    return wall * 1000, cpu * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--base', required=True, help='git revision to compare with')
    parser.add_argument('--new', default=None, help='git revision (default: the working tree)')
    parser.add_argument('--runs', type=int, default=15)
    parser.add_argument('--control', action='store_true', help='also time a second copy of the base (the noise)')
    opts = parser.parse_args()
    prefix = 'vlay-%s-' % uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix='vlay-'))
    os.chmod(work, 0o755)
    revs = [('base', opts.base), ('new', opts.new)]
    if opts.control:
        revs.append(('control', opts.base))
    colls = {label: tree(rev, work, label) for label, rev in revs}
    todo = tasks(prefix, work)
    try:
        for key in ('storage_pool', 'volume', 'network', 'guest'):
            module, args = todo[key]
            adhoc(colls['new'], module, args)
        keep = work / 'keep'
        keep.mkdir()
        payloads = {(label, key): keep_payload(colls[label], *todo[key], keep) for label, _rev in revs for key in todo}
        samples = {pk: [] for pk in payloads}
        for _round in range(opts.runs):
            for pk in payloads:  # interleaved: both revisions see the same load
                samples[pk].append(time_run(payloads[pk]))
        header = ['task', 'base wall ms', 'new wall ms', 'new/base', 'base CPU ms', 'new CPU ms', 'new/base']
        if opts.control:
            header += ['control/base wall', 'control/base CPU']
        header += ['base zip KiB (files)', 'new zip KiB (files)']
        print('| ' + ' | '.join(header) + ' |')
        print('|' + ' --- |' * len(header))
        for key in todo:
            row = []
            med = {}
            for label, _rev in revs:
                walls = [s[0] for s in samples[(label, key)]]
                cpus = [s[1] for s in samples[(label, key)]]
                med[label] = (statistics.median(walls), statistics.median(cpus), zip_facts(payloads[(label, key)]))
            bw, bc, (bz, bf) = med['base']
            nw, nc, (nz, nf) = med['new']
            row = [key, '%.0f' % bw, '%.0f' % nw, '%.2f' % (nw / bw), '%.0f' % bc, '%.0f' % nc, '%.2f' % (nc / bc)]
            if opts.control:
                cw, cc, _facts = med['control']
                row += ['%.2f' % (cw / bw), '%.2f' % (cc / bc)]
            row += ['%.1f (%s)' % ((bz or 0) / 1024, bf), '%.1f (%s)' % ((nz or 0) / 1024, nf)]
            print('| ' + ' | '.join(row) + ' |')
        print(
            '\nmedian of %d interleaved runs of each payload (an idempotent re-run), base=%s new=%s'
            % (opts.runs, opts.base, opts.new or 'working tree')
        )
    finally:
        cleanup(colls['new'], todo)
        shutil.rmtree(work, ignore_errors=True)


def cleanup(coll, todo):
    guest = todo['guest'][1]['name']
    net = todo['network'][1]['name']
    pool = todo['storage_pool'][1]['name']
    for module, args in (
        ('guest', dict(name=guest, state='absent')),
        ('network', dict(name=net, state='absent')),
        ('volume', dict(pool=pool, name='vol.qcow2', state='absent')),
        ('storage_pool', dict(name=pool, state='absent')),
    ):
        try:
            adhoc(coll, module, args)
        except SystemExit as exc:
            print('cleanup: %s' % exc, file=sys.stderr)


if __name__ == '__main__':
    main()
