# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One run at a time per object on the managed host: a lock file per (daemon, kind, name).

libvirt makes each call atomic, not a run's read -> plan -> apply. Creating a network, pool or
guest takes several calls (define, then start, then autostart), and a run that reads the object
between two of them sees a half-made object: a defined network that does not run yet looks like
one that was left stopped, so that run plans the start itself and both runs report a change
(``tests/unit/test_object_lock.py`` plays these interleavings). No libvirt-level marker tells a
half-made object from a stopped one (networks and pools have no metadata on libvirt 9), so on a
local URI - where every run that can race on an object runs on this machine - the run holds an
exclusive ``flock`` on ``<LOCK_DIR>/<kind>-<hash of daemon, kind, name>.lock`` from its first read of
the object until the module ends (:meth:`ObjectLocks.release`, or the process exits: the kernel
drops the lock of a killed run). The next run then reads what the first one made and plans
nothing. The wait starts once the daemon answered the connection, so a daemon that is down fails
the task at once, not after the other run.

Runs through a remote URI (another machine's runs cannot see this lock) and the private test
driver (``test:///...``, each process its own) take no lock; for remote runs the libvirt-level
protocol stays the guard: a losing define waits for the winner (``plan.wait_settled``) and
replans, and the actions of existing objects report only what this run made. When the lock
directory cannot be used (read-only, another user's), the run goes on without the lock.

A task that handles several objects (``objects``) takes all of their locks at once, sorted
(:meth:`ObjectLocks.hold_all`), so two such tasks never wait on each other in a circle; objects it
finds only later (guests it prunes) are then not locked: their removal is exactly-once in libvirt.
"""

from __future__ import annotations

import fcntl
import hashlib
import os

LOCK_DIR = '/run/lock/virtops-libvirt'

# the lock files this process holds: {path: [fd, holders]}. flock() belongs to an open file, so a
# second open of the same file in this process would wait on the first: a key held here is shared
_HELD = {}


def _open(directory, path):
    """An fd of the lock file ``path`` (created when missing), None when it cannot be had."""
    try:
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
            os.chmod(directory, 0o1777)  # like /run/lock: every user's runs lock here, none removes another's
    except OSError:
        return None
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(path, flags, 0o666)
        except OSError:
            continue
    return None


class ObjectLocks:
    """The object locks of one connection (one module run). ``enabled``: whether this URI's runs
    lock at all (a local URI, not the private test driver). ``directory`` and ``held`` are for
    tests (another lock directory; a table of their own plays another process)."""

    def __init__(self, daemon, enabled=True, directory=None, held=None):
        self.daemon = daemon or ''  # connection.daemon_key: one name per daemon, however spelled
        self.enabled = enabled
        self.directory = directory or LOCK_DIR
        self.held = _HELD if held is None else held
        self.mine = []  # paths this run holds, in the order taken
        self.complete = False  # hold_all() took every lock this run takes
        self.waiting = None  # for tests: called with the path before waiting on another run

    def path(self, kind, name):
        key = '\0'.join((self.daemon, kind, name)).encode('utf-8', 'surrogateescape')
        return os.path.join(self.directory, '%s-%s.lock' % (kind, hashlib.sha256(key).hexdigest()[:32]))

    def hold(self, kind, name):
        """Wait until no other run on this host holds ``kind`` ``name`` (the same daemon), then hold
        it until :meth:`release`. Taken already by this run: nothing to do."""
        if not self.enabled or self.complete:
            return
        path = self.path(kind, name)
        if path in self.mine:
            return
        entry = self.held.get(path)
        if entry is None:
            fd = _open(self.directory, path)
            if fd is None:
                return  # no usable lock directory: the libvirt-level protocol alone
            if not self._lock(fd, path):
                os.close(fd)
                return  # a file system without flock: as without a lock directory
            entry = self.held[path] = [fd, 0]
        entry[1] += 1
        self.mine.append(path)

    def _lock(self, fd, path):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass  # another run holds it
        except OSError:
            return False
        if self.waiting is not None:
            self.waiting(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            return False
        return True

    def hold_all(self, keys):
        """Hold every ``(kind, name)`` of ``keys``, in one order for every run; later
        :meth:`hold` calls of this run then take nothing more."""
        for kind, name in sorted(set(keys)):
            self.hold(kind, name)
        self.complete = True

    def release(self):
        """Let the other runs go (the module is done)."""
        while self.mine:
            path = self.mine.pop()
            entry = self.held.get(path)
            if entry is None:
                continue
            entry[1] -= 1
            if entry[1] <= 0:
                del self.held[path]
                os.close(entry[0])  # closing the last fd of the file drops the flock
        self.complete = False
