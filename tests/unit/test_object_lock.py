# SPDX-License-Identifier: GPL-3.0-or-later
"""Two runs on one object, interleaved on purpose (the holes the 8-playbook reliability test hit
by chance), and the per-object lock that closes them (``_core/lock.py``).

A run that creates a network, pool or guest makes several libvirt calls (define, start,
autostart). The second run is started right after one of the first run's steps and, without the
lock, runs to its end before the first one goes on: it finds a defined object that does not run
(or runs without autostart), finishes it and reports that, and the first run reports the define -
two runs changed. With the lock the second run waits before its read until the first run ended,
then finds the object made and changes nothing. Real managers over libvirt's test driver (shared
by the connections of one process); each run has a lock table of its own, as a separate process
would."""

from __future__ import annotations

import threading
import types

import libvirt
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._bulk.view import validate
from ansible_collections.virtops.libvirt.plugins.module_utils._core import lock as L
from ansible_collections.virtops.libvirt.plugins.module_utils._core.connection import Connection, LibvirtClient
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import apply as guest_apply
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import options as guest_options
from ansible_collections.virtops.libvirt.plugins.module_utils._guest.manager import GuestManager
from ansible_collections.virtops.libvirt.plugins.module_utils._network import apply as network_apply
from ansible_collections.virtops.libvirt.plugins.module_utils._network import options as network_options
from ansible_collections.virtops.libvirt.plugins.module_utils._network.manager import NetworkManager
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import pool_apply, pool_options
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.pool import PoolManager

URI = 'test:///default'

libvirt.registerErrorHandler(lambda ctx, err: None, None)


# ---------------------------------------------------------------------------------------------
# the lock itself


def test_a_second_run_waits_until_the_first_releases(tmp_path):
    first = L.ObjectLocks('qemu:///system', directory=str(tmp_path), held={})
    second = L.ObjectLocks('qemu:///system', directory=str(tmp_path), held={})
    waited, got = threading.Event(), threading.Event()
    second.waiting = lambda path: waited.set()
    first.hold('network', 'n')

    def take():
        second.hold('network', 'n')
        got.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert waited.wait(10)
    assert not got.is_set()  # held by the first run: still waiting
    first.release()
    thread.join(10)
    assert got.is_set() and not thread.is_alive()
    second.release()


def test_other_objects_and_other_uris_do_not_wait(tmp_path):
    first = L.ObjectLocks('qemu:///system', directory=str(tmp_path), held={})
    first.hold('network', 'n')
    for uri, kind, name in (
        ('qemu:///system', 'network', 'm'),
        ('qemu:///system', 'pool', 'n'),  # a pool named like the network
        ('qemu:///session', 'network', 'n'),
    ):
        other = L.ObjectLocks(uri, directory=str(tmp_path), held={})
        other.waiting = lambda path: pytest.fail('waited for another object')
        other.hold(kind, name)
        other.release()
    first.release()


def test_one_process_shares_a_key_and_releases_it_with_its_last_holder(tmp_path):
    """flock() belongs to an open file: a second open in the same process would wait on the first
    (the objects module's entries, in-process runs): the process shares what it holds."""
    table = {}
    one = L.ObjectLocks('qemu:///system', directory=str(tmp_path), held=table)
    two = L.ObjectLocks('qemu:///system', directory=str(tmp_path), held=table)
    one.hold('guest', 'g')
    one.hold('guest', 'g')  # again in the same run (a replan): nothing more
    two.hold('guest', 'g')
    assert [holders for _fd, holders in table.values()] == [2]
    one.release()
    assert table  # still held by the second
    outside = L.ObjectLocks('qemu:///system', directory=str(tmp_path), held={})
    outside.waiting = lambda path: two.release()  # the other holder lets go while we wait
    outside.hold('guest', 'g')
    assert not table
    outside.release()


def test_several_objects_are_taken_in_one_order_then_no_more(tmp_path):
    locks = L.ObjectLocks('qemu:///system', directory=str(tmp_path), held={})
    keys = [('pool', 'b'), ('guest', 'z'), ('network', 'a'), ('guest', 'a'), ('pool', 'b')]
    locks.hold_all(keys)
    assert locks.mine == [locks.path(kind, name) for kind, name in sorted(set(keys))]
    locks.hold('guest', 'pruned')  # found later (prune): not locked
    assert len(locks.mine) == 4
    locks.release()
    assert not locks.mine and not locks.complete


def test_which_connections_lock(tmp_path):
    def enabled(uri):
        return Connection(libvirt, uri).locks.enabled

    assert enabled('qemu:///system') and enabled('qemu+unix:///system') and enabled('test+unix:///default')
    assert enabled('qemu+ssh://localhost/system')
    assert not enabled('qemu+ssh://other.example/system')  # the other machine's runs cannot see it
    assert not enabled('test:///default')  # every process has its own


def test_one_daemon_under_two_spellings_is_one_lock():
    def path(uri):
        return Connection(libvirt, uri).locks.path('guest', 'g')

    # the default transport of a local URI is the unix socket: the same daemon, the same lock
    assert path('qemu:///system') == path('qemu+unix:///system')
    assert path('qemu:///system') != path('qemu:///session')


def test_an_unusable_lock_directory_runs_without_the_lock(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    locks = L.ObjectLocks('qemu:///system', directory=str(blocker / 'locks'), held={})
    locks.hold('network', 'n')
    assert locks.mine == []


# ---------------------------------------------------------------------------------------------
# two runs of one module on one object, the second one read between the first one's define and start


def _client(params, locks):
    module = types.SimpleNamespace(
        params=dict(params, uri=URI, username=None, password=None),
        check_mode=False,
        _diff=True,
        no_log_values=set(),
        warn=lambda msg: None,
    )
    cli = LibvirtClient(module)
    cli.locks = locks
    return cli


def _run(manager_class, params, locks, out, key):
    cli = _client(params, locks)
    try:
        out[key] = manager_class(cli).run()
    finally:
        cli.close()


KINDS = {
    # kind: (manager, spec, apply module, the first run's action after which the second one reads,
    # options, what the second run reports without the lock)
    'network': (
        NetworkManager,
        network_options.SPEC,
        network_apply,
        'define_new',
        lambda name: dict(name=name, ip='198.51.100.17/28'),
        "network '%s' started",
    ),
    'network autostart': (
        NetworkManager,
        network_options.SPEC,
        network_apply,
        'start',
        lambda name: dict(name=name, ip='198.51.100.17/28', autostart=True),
        "network '%s' autostart enabled",
    ),
    'pool': (
        PoolManager,
        pool_options.SPEC,
        pool_apply,
        'create',
        lambda name: dict(name=name, type='dir', target='/lock-test/' + name),
        "storage pool '%s' started",
    ),
    'guest': (
        GuestManager,
        guest_options.SPEC,
        guest_apply,
        'define',
        lambda name: dict(name=name, domain_type='test', memory='64MiB', state='running'),
        "guest '%s' started",
    ),
}


def _remove(conn, kind, name):
    try:
        obj = {'network': conn.networkLookupByName, 'pool': conn.storagePoolLookupByName, 'guest': conn.lookupByName}[
            kind
        ](name)
    except libvirt.libvirtError:
        return
    if obj.isActive():
        obj.destroy()
    obj.undefine()


@pytest.mark.parametrize('case', sorted(KINDS))
@pytest.mark.parametrize('locked', [False, True], ids=['no lock', 'object lock'])
def test_a_run_reading_between_two_steps_of_a_create(monkeypatch, tmp_path, case, locked):
    manager_class, spec, apply_module, action, args, reported = KINDS[case]
    kind = case.split()[0]
    name = 'vt-lock-%s-%s' % (case.replace(' ', '-'), 'on' if locked else 'off')
    params = validate(spec, args(name), lambda values: None)
    conn = libvirt.open(URI)
    _remove(conn, kind, name)
    first_locks = L.ObjectLocks(URI, enabled=locked, directory=str(tmp_path), held={})
    second_locks = L.ObjectLocks(URI, enabled=locked, directory=str(tmp_path), held={})
    results = {}
    second = threading.Thread(target=_run, args=(manager_class, params, second_locks, results, 'second'))
    waiting = threading.Event()
    second_locks.waiting = lambda path: waiting.set()
    real_action = getattr(apply_module, action)
    defines = []

    def act_then_let_the_other_run_read(*call_args, **kwargs):
        made = real_action(*call_args, **kwargs)
        if not defines:  # the first run's step: the second run starts now
            defines.append(call_args)
            second.start()
            while second.is_alive() and not waiting.is_set():
                second.join(0.01)  # until it ran through, or waits on the lock
        return made

    monkeypatch.setattr(apply_module, action, act_then_let_the_other_run_read)
    try:
        _run(manager_class, params, first_locks, results, 'first')
        second.join(30)
        assert not second.is_alive()
        changed = sorted(key for key, result in results.items() if result['changed'])
        assert defines and waiting.is_set() == locked
        if locked:
            # the second run read the finished object: exactly one run made it
            assert changed == ['first'], results
            assert results['second']['actions'] == []
        else:
            # the hole: the second run finished the half-made object, the first reported the define
            assert changed == ['first', 'second'], results
            assert results['second']['actions'] == [reported % name]
        found = {'network': conn.networkLookupByName, 'pool': conn.storagePoolLookupByName, 'guest': conn.lookupByName}[
            kind
        ](name)
        assert found.isActive()
    finally:
        _remove(conn, kind, name)
        conn.close()
