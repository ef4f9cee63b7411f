#!/usr/bin/env python
# SPDX-License-Identifier: GPL-3.0-or-later
"""How soon does ``Agent.wait`` (guest_agent action=wait, guest wait_for=agent) return after a
booting guest's agent starts answering?

Two copies of the cached test guest are started at the same moment. On guest A the collection's
event-driven ``Agent.wait`` runs, next to a raw ``guest-ping`` loop polling every 10 ms (so we know
when A's agent really answered). On guest B only the raw 10 ms loop runs, as the reference the
issue asks for (same boot, no waiter on it). Times are seconds after ``virDomainCreate``.

Not part of the test suite. Needs root, libvirtd and the test image
(/var/lib/libvirt/images/virtops-test). Run:

    $VENV/bin/python bench/agent_wait.py [--rounds 3] [--uri qemu:///system]

Everything it defines is named ``vbench-<random>-*`` and removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import types
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))

from virtops_helpers import IMAGE_DIR, ensure_collection_link, ok, run_module  # noqa: E402

sys.path.insert(0, str(ensure_collection_link()))

import libvirt  # noqa: E402
import libvirt_qemu  # noqa: E402

from ansible_collections.virtops.libvirt.plugins.module_utils._agent import Agent  # noqa: E402
from ansible_collections.virtops.libvirt.plugins.module_utils._connection import LibvirtClient  # noqa: E402

POLL = 0.01


def guest_spec(name):
    return dict(
        name=name,
        memory='256MiB',
        vcpus=1,
        guest_agent=True,
        interfaces=[dict(type='user')],
        boot=dict(
            kernel=str(IMAGE_DIR / 'vmlinuz'), initrd=str(IMAGE_DIR / 'initrd.img'), cmdline='console=ttyS0 quiet'
        ),
        state='present',
    )


def raw_ping_loop(dom, start, out, key, stop, limit):
    """Ping every 10 ms until the agent answers; store seconds after ``start``."""
    payload = json.dumps({'execute': 'guest-ping'})
    while not stop.is_set() and time.monotonic() - start < limit:
        try:
            libvirt_qemu.qemuAgentCommand(dom, payload, 1, 0)
            out[key] = time.monotonic() - start
            return
        except libvirt.libvirtError:
            time.sleep(POLL)


def one_round(client, dom_a, dom_b, limit):
    for dom in (dom_a, dom_b):
        if dom.isActive():
            dom.destroy()
    barrier = threading.Barrier(2)
    started = {}

    def start(key, dom):
        barrier.wait()
        started[key] = time.monotonic()
        dom.create()

    starters = [threading.Thread(target=start, args=('a', dom_a)), threading.Thread(target=start, args=('b', dom_b))]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()

    found = {}
    stop = threading.Event()
    loops = [
        threading.Thread(target=raw_ping_loop, args=(dom_a, started['a'], found, 'a_raw', stop, limit)),
        threading.Thread(target=raw_ping_loop, args=(dom_b, started['b'], found, 'b_raw', stop, limit)),
    ]
    for thread in loops:
        thread.start()
    agent_dom = client.conn.lookupByName(dom_a.name())
    Agent(client, agent_dom, dom_a.name()).wait(limit)
    found['a_wait'] = time.monotonic() - started['a']
    for thread in loops:
        thread.join(limit)
    stop.set()
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--uri', default='qemu:///system')
    parser.add_argument('--limit', type=float, default=180, help='seconds to wait for an agent per round')
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)

    prefix = 'vbench-%s-' % uuid.uuid4().hex[:6]
    names = [prefix + 'a', prefix + 'b']
    conn = libvirt.open(args.uri)
    fake_module = types.SimpleNamespace(
        params=dict(uri=args.uri, username=None, password=None), check_mode=False, _diff=False
    )
    client = LibvirtClient(fake_module)
    client.enable_events()
    rows = []
    try:
        for name in names:
            ok(run_module('guest', dict(guest_spec(name), uri=args.uri)))
        dom_a, dom_b = (conn.lookupByName(name) for name in names)
        for index in range(args.rounds):
            rows.append(one_round(client, dom_a, dom_b, args.limit))
            print('round %d done' % (index + 1), file=sys.stderr)
    finally:
        for name in names:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        client.close()
        conn.close()

    print()
    print('seconds after virDomainCreate (poll = %d ms)' % (POLL * 1000))
    print('%-6s %12s %12s %14s %12s' % ('round', 'A raw ping', 'A wait()', 'wait - raw', 'B raw ping'))
    for index, row in enumerate(rows, 1):
        print(
            '%-6d %12.3f %12.3f %14.3f %12.3f'
            % (
                index,
                row.get('a_raw', float('nan')),
                row['a_wait'],
                row['a_wait'] - row.get('a_raw', float('nan')),
                row.get('b_raw', float('nan')),
            )
        )
    if rows:
        lag = [row['a_wait'] - row['a_raw'] for row in rows if 'a_raw' in row]
        vs_b = [row['a_wait'] - row['b_raw'] for row in rows if 'b_raw' in row]
        print('%-6s %12s %12s %14.3f %12s' % ('median', '', '', statistics.median(lag) if lag else float('nan'), ''))
        print('wait() vs guest B raw loop, median: %+.3f s' % (statistics.median(vs_b) if vs_b else float('nan')))


if __name__ == '__main__':
    main()
