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

``--module`` measures the real module instead (what ``make bench`` reports as P3): on one guest
``virtops.libvirt.guest_agent action=wait`` runs as its own process, as Ansible runs it, launched
the moment that guest's ``virDomainCreate`` returns; on the other guest the raw 10 ms
``guest-ping`` loop starts the moment its own ``virDomainCreate`` returns. Nothing else touches
the agents; libvirt's agent-lifecycle events (received passively by this process) tell when each
guest's agent channel connected. The roles swap every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))

from _common import boot_spec  # noqa: E402
from virtops_helpers import ensure_collection_link, module_env, ok, run_module  # noqa: E402

sys.path.insert(0, str(ensure_collection_link()))

import libvirt  # noqa: E402
import libvirt_qemu  # noqa: E402

from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import (  # noqa: E402
    LibvirtClient,
    _start_event_loop,
)
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.agent import Agent  # noqa: E402

POLL = 0.01


def guest_spec(name):
    return dict(boot_spec(), name=name, state='present')


def remove_guests(conn, names):
    for name in names:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefine()


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


def start_module(name, args, env=None):
    """Launch ``virtops.libvirt.<name>`` as its own process (Ansible's module process); returns
    the Popen. The arguments file is removed when the process has read it (at exit)."""
    payload = dict(args, _ansible_check_mode=False, _ansible_diff=False, _ansible_verbosity=0)
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': payload}, handle)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'ansible_collections.virtops.libvirt.plugins.modules.%s' % name, handle.name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=module_env(env),
        cwd=tempfile.gettempdir(),
    )
    proc.args_file = handle.name
    return proc


def module_rounds(names, rounds, uri='qemu:///system', limit=180.0, env=None, log=None):
    """P3: per round, seconds after each guest's ``virDomainCreate`` started until

    * ``module``: the guest_agent action=wait process on the waiting guest returned,
    * ``raw``: the raw 10 ms guest-ping loop on the other guest got its first answer,
    * ``event_waiter`` / ``event_other``: libvirt reported each guest's agent channel connected.

    ``names`` are two defined, identical guests that boot the test image with an agent channel.
    """
    _start_event_loop()  # before the connection opens: it receives the agent-lifecycle events
    conn = libvirt.open(uri)
    connected = {}

    def on_agent(_conn, dom, state, _reason, _opaque):
        if state == getattr(libvirt, 'VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED', 1):
            connected.setdefault(dom.name(), time.monotonic())

    callback = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE, on_agent, None)
    rows = []
    try:
        doms = [conn.lookupByName(name) for name in names]
        for index in range(rounds):
            waiter, other = (doms[0], doms[1]) if index % 2 == 0 else (doms[1], doms[0])
            for dom in doms:
                if dom.isActive():
                    dom.destroy()
            time.sleep(0.5)  # let late events of the previous round arrive before clearing
            connected.clear()
            barrier = threading.Barrier(2)
            started, found = {}, {}
            stop = threading.Event()

            def wait_with_module(dom, barrier, started, found):
                barrier.wait()
                started['waiter'] = time.monotonic()
                dom.create()
                proc = start_module(
                    'guest_agent', dict(name=dom.name(), action='wait', timeout=int(limit), uri=uri), env=env
                )
                out, err = proc.communicate(timeout=limit + 60)
                found['module'] = time.monotonic() - started['waiter']
                os.unlink(proc.args_file)
                result = json.loads(out or '{}')
                if proc.returncode != 0 or result.get('failed'):
                    found['error'] = result.get('msg') or err[-2000:]
                found['reported_wait'] = result.get('agent_wait_seconds')

            def wait_raw(dom, barrier, started, found, stop):
                barrier.wait()
                started['other'] = time.monotonic()
                dom.create()
                raw_ping_loop(dom, started['other'], found, 'raw', stop, limit)

            threads = [
                threading.Thread(target=wait_with_module, args=(waiter, barrier, started, found)),
                threading.Thread(target=wait_raw, args=(other, barrier, started, found, stop)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(limit + 90)
            stop.set()
            if 'error' in found:
                raise RuntimeError('guest_agent action=wait failed: %s' % found['error'])
            row = dict(
                waiter=waiter.name(),
                module=found.get('module'),
                raw=found.get('raw'),
                reported_wait=found.get('reported_wait'),
            )
            for key, dom, side in (('event_waiter', waiter, 'waiter'), ('event_other', other, 'other')):
                row[key] = connected[dom.name()] - started[side] if dom.name() in connected else None
            rows.append(row)
            if log:
                log(
                    'P3 round %d: module %.3f s, raw %.3f s, agent events %s / %s'
                    % (index + 1, row['module'] or -1, row['raw'] or -1, row['event_waiter'], row['event_other'])
                )
        for dom in doms:
            if dom.isActive():
                dom.destroy()
    finally:
        try:
            conn.domainEventDeregisterAny(callback)
        except libvirt.libvirtError:
            pass
        conn.close()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--uri', default='qemu:///system')
    parser.add_argument('--limit', type=float, default=180, help='seconds to wait for an agent per round')
    parser.add_argument('--module', action='store_true', help='time the guest_agent module process (P3 of make bench)')
    args = parser.parse_args()
    libvirt.registerErrorHandler(lambda ctx, err: None, None)

    prefix = 'vbench-%s-' % uuid.uuid4().hex[:6]
    names = [prefix + 'a', prefix + 'b']
    if args.module:
        return main_module(args, names)
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
        remove_guests(conn, names)
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


def main_module(args, names):
    rows = []
    try:
        for name in names:
            ok(run_module('guest', dict(guest_spec(name), uri=args.uri)))
        rows = module_rounds(
            names, args.rounds, uri=args.uri, limit=args.limit, log=lambda msg: print(msg, file=sys.stderr)
        )
    finally:
        conn = libvirt.open(args.uri)
        remove_guests(conn, names)
        conn.close()
    print()
    print('seconds after virDomainCreate; module = guest_agent action=wait process, raw = 10 ms loop on the other')
    print('%-6s %10s %10s %12s %14s %14s' % ('round', 'module', 'raw', 'module-raw', 'module-event', 'raw-event'))
    for index, row in enumerate(rows, 1):
        print(
            '%-6d %10.3f %10.3f %12.3f %14.3f %14.3f'
            % (
                index,
                row['module'],
                row['raw'],
                row['module'] - row['raw'],
                row['module'] - (row['event_waiter'] or float('nan')),
                row['raw'] - (row['event_other'] or float('nan')),
            )
        )


if __name__ == '__main__':
    main()
