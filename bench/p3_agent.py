# SPDX-License-Identifier: GPL-3.0-or-later
"""P3 - agent-ready latency: ``guest_agent action=wait`` vs a raw 10 ms guest-ping loop.

Two identical copies of the cached test guest (TCG, user-mode NIC, agent channel) are started
at the same moment; see :func:`agent_wait.module_rounds` for what runs on each. Overhead of the
module = (module returned) - (raw loop answered on the other guest), median over the rounds, with
the roles swapped every round so that which guest boots faster cancels out. Also reported: the
module's lag behind its own guest's agent-connected event, and the raw loop's (which is what
10 ms polling costs by itself).
"""

from __future__ import annotations

import _common as C
import agent_wait


def run(bench, rounds=6, limit=180.0):
    names = [bench.name('p3-a'), bench.name('p3-b')]
    for name in names:
        bench.run_module('guest', dict(agent_wait.guest_spec(name), uri=bench.uri))
    env = dict(VIRTOPS_LIBVIRT_STATE_DIR=str(bench.state_dir))
    try:
        rows = agent_wait.module_rounds(names, rounds, uri=bench.uri, limit=limit, env=env, log=C.log)
    finally:
        for name in names:
            dom = bench.conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
    overhead = [r['module'] - r['raw'] for r in rows]
    vs_event = [r['module'] - r['event_waiter'] for r in rows if r['event_waiter'] is not None]
    raw_vs_event = [r['raw'] - r['event_other'] for r in rows if r['event_other'] is not None]
    boot_skew = [
        r['event_waiter'] - r['event_other']
        for r in rows
        if r['event_waiter'] is not None and r['event_other'] is not None
    ]
    return dict(
        rounds=rounds,
        rows=rows,
        module=C.stats([r['module'] for r in rows]),
        raw=C.stats([r['raw'] for r in rows]),
        overhead=C.stats(overhead),
        module_vs_event=C.stats(vs_event),
        raw_vs_event=C.stats(raw_vs_event),
        boot_skew=C.stats(boot_skew),
        event_corrected=C.stats([a - b for a, b in zip(vs_event, raw_vs_event)])
        if len(vs_event) == len(raw_vs_event)
        else None,
    )
