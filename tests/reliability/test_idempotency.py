# SPDX-License-Identifier: GPL-3.0-or-later
"""The idempotency matrix: every module x every state/action.

For a state-changing row: check mode first (predicts ``changed``, leaves the row's libvirt
objects byte-identical), the real run (``changed``, libvirt really changed, a diff whose before
and after differ), the same task again (``changed: false``, no diff) and check mode again
(``changed: false``). Read-only rows must never change anything; the three guest_agent actions
that cannot be compared (exec, set_time, set_password) must report a change every time, change
nothing in check mode and do something for real.

Rows of one module run in order; the modules run side by side on a small thread pool (each
module's rows work on their own objects and snapshot only those). The read-only rows run last,
alone, against a snapshot of the whole private test driver.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
import uuid

import libvirt
from reliability_lib import (
    FIGURES,
    agent_cmd,
    freeze_status,
    guest_read,
    parallel,
    run,
    snapshot,
    snapshot_diff,
)
from virtops_helpers import PREFIX

ALWAYS = 'always'
READONLY = 'readonly'
IDEMPOTENT = 'idempotent'


def _brief(result):
    return (result.get('msg') or result.get('_traceback') or str(result.get('actions')))[:300]


def matrix_row(module, label, uri_label, args, snap, kind=IDEMPOTENT, diff=True):
    """Run one row and return its record (also when a run fails: the failing cells say so)."""
    cells = {}
    notes = []
    row = dict(module=module, label=label, uri=uri_label, cells=cells, notes=notes)

    def fail_rest(stage, result):
        notes.append('%s run failed: %s' % (stage, _brief(result)))
        for key in ('first', 'rerun', 'check', 'pure', 'diff', 'check2'):
            cells.setdefault(key, False)
        return row

    before = snap()
    checked = run(module, args, check=True)
    if checked.get('failed'):
        return fail_rest('check-mode', checked)
    after_check = snap()
    cells['pure'] = after_check == before
    if not cells['pure']:
        notes.append('check mode changed %s' % snapshot_diff(before, after_check))
    if kind == READONLY:
        cells['check'] = checked['changed'] is False
        real = run(module, args)
        if real.get('failed'):
            return fail_rest('real', real)
        after = snap()
        cells['rerun'] = real['changed'] is False
        cells['pure'] = cells['pure'] and after == before
        cells['first'] = cells['diff'] = cells['check2'] = None
        if 'diff' in real or 'diff' in checked:
            notes.append('a read-only run returned a diff')
            cells['rerun'] = False
        if not cells['check'] or not cells['rerun']:
            notes.append('a read-only run reported changed')
        return row

    cells['check'] = checked['changed'] is True
    if not cells['check']:
        notes.append('check mode predicted no change')
    first = run(module, args)
    if first.get('failed'):
        return fail_rest('first', first)
    after_first = snap()
    cells['first'] = first['changed'] is True and after_first != before
    if first['changed'] is not True:
        notes.append('first run reported no change')
    elif after_first == before:
        notes.append('first run reported a change but libvirt/guest state is the same')
    if diff:
        got = first.get('diff') or {}
        cells['diff'] = bool(got) and got.get('before') != got.get('after')
        if not cells['diff']:
            notes.append('no diff (or before == after) on a change')
    else:
        cells['diff'] = None
    second = run(module, args)
    if second.get('failed'):
        notes.append('re-run failed: %s' % _brief(second))
        cells['rerun'] = False
    elif kind == ALWAYS:
        cells['rerun'] = None
        if second['changed'] is not True:
            notes.append('documented to always report a change, but the re-run did not')
            cells['first'] = False
    else:
        cells['rerun'] = second['changed'] is False and 'diff' not in second
        if not cells['rerun']:
            notes.append('re-run: changed=%s actions=%s' % (second['changed'], second.get('actions')))
    if kind == ALWAYS:
        cells['check2'] = None
        return row
    again = run(module, args, check=True)
    cells['check2'] = not again.get('failed') and again['changed'] is False
    if not cells['check2']:
        notes.append(
            'check mode after convergence: %s' % (_brief(again) if again.get('failed') else again.get('actions'))
        )
    return row


def run_group(rows):
    """Rows of one module, in order; ``rows`` yields (callable producing a row record)."""
    done = []
    for make in rows:
        try:
            done.append(make())
        except Exception as exc:
            cells = dict.fromkeys(('first', 'rerun', 'check', 'pure', 'diff', 'check2'), False)
            done.append(dict(module='?', label='harness error', uri='', cells=cells, notes=[repr(exc)]))
    return done


# ---------------------------------------------------------------------------------------------
# the groups


def guest_rows(tdrv, uri):
    name = PREFIX + 'm-guest'

    def snap():
        return snapshot(tdrv, keep=lambda n: n == name)

    base = dict(uri=uri, name=name)
    steps = [
        ('present', dict(base, domain_type='test', memory='128MiB', vcpus=1, state='present')),
        ('present (update memory)', dict(base, memory='192MiB')),
        ('running', dict(base, state='running')),
        ('paused', dict(base, state='paused')),
        ('running (resume)', dict(base, state='running')),
        ('stopped', dict(base, state='stopped')),
        ('absent', dict(base, state='absent')),
    ]
    return [functools.partial(matrix_row, 'guest', label, 'test', args, snap) for label, args in steps]


def network_rows(tdrv, uri):
    name = PREFIX + 'm-net'

    def snap():
        return snapshot(tdrv, keep=lambda n: n == name)

    base = dict(uri=uri, name=name)
    spec = dict(base, ip='198.51.100.1/24', dhcp=dict(ranges=[dict(start='198.51.100.10', end='198.51.100.20')]))
    steps = [
        ('present', dict(spec, state='present')),
        ('active', dict(spec, state='active')),
        ('active (update mtu, restart)', dict(spec, mtu=1400, state='active')),
        ('inactive', dict(base, state='inactive')),
        ('absent', dict(base, state='absent')),
    ]
    return [functools.partial(matrix_row, 'network', label, 'test', args, snap) for label, args in steps]


def pool_rows(tdrv, uri):
    name = PREFIX + 'm-pool'

    def snap():
        return snapshot(tdrv, keep=lambda n: n == name)

    base = dict(uri=uri, name=name)
    spec = dict(base, type='dir', target='/reliability/' + name)
    steps = [
        ('present', dict(spec, state='present')),
        ('active', dict(spec, state='active')),
        ('active (autostart)', dict(spec, state='active', autostart=True)),
        ('inactive', dict(base, state='inactive')),
        ('absent', dict(base, state='absent')),
    ]
    return [functools.partial(matrix_row, 'storage_pool', label, 'test', args, snap) for label, args in steps]


def volume_rows(pair_conn, host, pool_name, src):
    """On the QEMU driver of a namespaced host (the test driver cannot resize or upload)."""

    def content(vol_name):
        path = host.host_path('/var/lib/libvirt/images/%s/%s' % (pool_name, vol_name))
        if not os.path.exists(path):
            return None
        with open(path, 'rb') as handle:
            return hashlib.sha256(handle.read()).hexdigest()

    def snap():
        state = snapshot(pair_conn, keep=lambda n: n == pool_name, pool_numbers=False)
        state['content'] = (content('m-vol.qcow2'), content('m-upload.raw'))
        return state

    base = dict(uri=host.uri, pool=pool_name)
    steps = [
        ('present (create)', dict(base, name='m-vol.qcow2', capacity='1MiB')),
        ('present (grow)', dict(base, name='m-vol.qcow2', capacity='2MiB')),
        ('present (upload src)', dict(base, name='m-upload.raw', src=src)),
        ('absent', dict(base, name='m-vol.qcow2', state='absent')),
        ('absent (uploaded)', dict(base, name='m-upload.raw', state='absent')),
    ]
    return [functools.partial(matrix_row, 'volume', label, 'pair qemu', args, snap) for label, args in steps]


def hostdev_rows(tdrv, uri):
    guest = PREFIX + 'm-hostdev'

    def snap():
        return snapshot(tdrv, keep=lambda n: n == guest)

    def setup():
        result = run('guest', dict(uri=uri, name=guest, domain_type='test', memory='128MiB', vcpus=1))
        assert not result.get('failed'), result.get('msg')

    pci = dict(uri=uri, guest=guest, address=dict(type='pci', domain=0, bus='0a', slot='1f', function=7))
    usb = dict(uri=uri, guest=guest, address=dict(type='usb', vendor='046d', product='c52b'))
    vf = dict(
        uri=uri,
        guest=guest,
        address=dict(type='pci', bus='0x3b', slot='0x10', function=2),
        interface=dict(mac='52:54:00:6d:90:02', vlan=42),
    )
    steps = [
        ('present (PCI)', pci),
        ('absent (PCI)', dict(pci, state='absent')),
        ('present (USB)', usb),
        ('absent (USB)', dict(usb, state='absent')),
        ('present (SR-IOV VF interface)', vf),
        ('absent (SR-IOV VF interface)', dict(vf, state='absent')),
    ]
    makers = [functools.partial(matrix_row, 'hostdev', label, 'test', args, snap) for label, args in steps]

    def first():
        setup()
        return makers[0]()

    return [first] + makers[1:]


def npiv_rows(tdrv, uri):
    transient = PREFIX + 'm-vhba'
    persistent = PREFIX + 'm-vhbapool'

    def snap():
        return snapshot(tdrv, keep=lambda n: n in (transient, persistent), nodedevs=True)

    steps = [
        ('present (transient)', dict(uri=uri, name=transient, persistent=False)),
        ('absent (transient)', dict(uri=uri, name=transient, persistent=False, state='absent')),
        ('present (pool)', dict(uri=uri, name=persistent)),
        ('absent (pool)', dict(uri=uri, name=persistent, state='absent')),
    ]
    return [functools.partial(matrix_row, 'npiv_vhba', label, 'test', args, snap) for label, args in steps]


def migrate_rows(pair):
    name = PREFIX + 'm-migrate'
    a, b = pair.a, pair.b

    def snap():
        state = {}
        for host in (a, b):
            conn = host.open()
            try:
                state.update({'%s:%s' % (host.name, k): v for k, v in snapshot(conn, keep=lambda n: n == name).items()})
            finally:
                conn.close()
        return state

    def setup():
        conn = a.open()
        try:
            conn.defineXML(
                "<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                "<os><type arch='x86_64'>hvm</type></os><devices><memballoon model='none'/></devices></domain>" % name
            )
        finally:
            conn.close()

    there = dict(uri=a.uri, name=name, dest_uri=b.uri)
    back = dict(uri=b.uri, name=name, dest_uri=a.uri)

    def first():
        setup()
        return matrix_row('migrate', 'shut-off guest a -> b (offline)', 'pair qemu', there, snap)

    return [first, lambda: matrix_row('migrate', 'shut-off guest b -> a (offline)', 'pair qemu', back, snap)]


def agent_rows(agent_guest, qemu):
    name, dom = agent_guest
    tag = uuid.uuid4().hex[:8]
    marker = '/tmp/reliability-exec-%s' % tag
    path = '/data/reliability-%s.txt' % tag

    def xml():
        return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    def shadow():
        for line in (guest_read(dom, '/etc/shadow') or '').splitlines():
            if line.startswith('tester:'):
                return line.split(':')[1]
        return None

    def clock_offset_hours():
        guest_ns = agent_cmd(dom, 'guest-get-time')
        return round((guest_ns / 1e9 - time.time()) / 3600)

    def snap_with(probe):
        return lambda: (xml(), dom.state()[0], probe())

    base = dict(name=name)
    readonly = snap_with
    steps = [
        ('wait', dict(base, action='wait', timeout=30), readonly(lambda: freeze_status(dom)), READONLY, True),
        ('ping', dict(base, action='ping'), readonly(lambda: freeze_status(dom)), READONLY, True),
        ('info', dict(base, action='info'), readonly(lambda: freeze_status(dom)), READONLY, True),
        (
            'read_file',
            dict(base, action='read_file', path='/etc/hostname'),
            readonly(lambda: freeze_status(dom)),
            READONLY,
            True,
        ),
        (
            'write_file',
            dict(base, action='write_file', path=path, content='reliability %s\n' % tag, mode='0640'),
            snap_with(lambda: guest_read(dom, path)),
            IDEMPOTENT,
            True,
        ),
        (
            'exec',
            dict(base, action='exec', argv=['touch', marker]),
            snap_with(lambda: guest_read(dom, marker) is not None),
            ALWAYS,
            False,
        ),
        (
            'set_time',
            dict(base, action='set_time', time=int(time.time()) + 86400),
            snap_with(clock_offset_hours),
            ALWAYS,
            False,
        ),
        (
            'set_password',
            dict(base, action='set_password', user='tester', user_password='Matrix-%s' % tag),
            snap_with(shadow),
            ALWAYS,
            False,
        ),
        ('freeze', dict(base, action='freeze'), snap_with(lambda: freeze_status(dom)), IDEMPOTENT, True),
        ('thaw', dict(base, action='thaw'), snap_with(lambda: freeze_status(dom)), IDEMPOTENT, True),
    ]

    def make(label, args, snap, kind, diff):
        try:
            return matrix_row('guest_agent', label, 'qemu', args, snap, kind=kind, diff=diff)
        finally:
            if label == 'set_time':
                run('guest_agent', dict(name=name, action='set_time'))  # back to the host's clock

    return [functools.partial(make, *step) for step in steps]


def readonly_rows(tdrv, uri):
    def snap():
        return snapshot(tdrv, nodedevs=True)

    steps = [
        ('guest_info', 'all guests', dict(uri=uri)),
        ('guest_info', 'one guest (with XML)', dict(uri=uri, name='test', include_xml=True)),
        ('storage_pool_info', 'all pools (refresh)', dict(uri=uri, refresh=True)),
        ('hostdev_info', 'all devices', dict(uri=uri)),
        ('host_info', 'host', dict(uri=uri)),
    ]
    return [
        functools.partial(matrix_row, module, label, 'test', args, snap, kind=READONLY) for module, label, args in steps
    ]


# ---------------------------------------------------------------------------------------------


def test_idempotency_matrix(pair, tdrv, tdrv_uri, agent_guest, qemu, tmp_path):
    started = time.monotonic()
    a = pair.a
    conn_a = a.open()
    pool_name = PREFIX + 'm-volpool'
    conn_a.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>/var/lib/libvirt/images/%s</path></target></pool>"
        % (pool_name, pool_name),
        0,
    ).build(0)
    pool = conn_a.storagePoolLookupByName(pool_name)
    pool.create(0)
    src = tmp_path / 'upload.raw'
    with open(src, 'wb') as handle:  # 3 MiB: random data, a hole, random data
        handle.write(os.urandom(1024 * 1024))
        handle.seek(2 * 1024 * 1024)
        handle.write(os.urandom(1024 * 1024))
    groups = [
        guest_rows(tdrv, tdrv_uri),
        network_rows(tdrv, tdrv_uri),
        pool_rows(tdrv, tdrv_uri),
        volume_rows(conn_a, a, pool_name, str(src)),
        hostdev_rows(tdrv, tdrv_uri),
        npiv_rows(tdrv, tdrv_uri),
        migrate_rows(pair),
        agent_rows(agent_guest, qemu),
    ]
    try:
        results = parallel(run_group, groups)
        results.append(run_group(readonly_rows(tdrv, tdrv_uri)))
    finally:
        conn_a.close()
    rows = [row for group in results for row in group]
    FIGURES.matrix = rows
    FIGURES.timings['idempotency matrix'] = time.monotonic() - started
    failing = []
    for row in rows:
        for key, value in row['cells'].items():
            if value is False:
                failing.append('%s %s: %s -> %s' % (row['module'], row['label'], key, '; '.join(row['notes'])))
                FIGURES.finding(
                    'matrix', '%s %s (%s): %s' % (row['module'], row['label'], key, '; '.join(row['notes']))
                )
                break
    assert not failing, '\n'.join(failing)
