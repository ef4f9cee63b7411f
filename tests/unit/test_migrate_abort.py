# SPDX-License-Identifier: GPL-3.0-or-later
"""migrate timeout_action=abort when libvirt accepts the abort but the stream goes on.

The migration runs against fakes: a source guest whose migration keeps sending data until the
incoming guest on the destination is stopped, however often it is "aborted". The real-libvirt
side (stopping the incoming guest ends the migration, the guest stays on the source) is covered
by tests/integration/test_migrate.py.
"""

import threading
import types

import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import TimeoutExpired
from ansible_collections.virtops.libvirt.plugins.module_utils._migrate import apply as A
from ansible_collections.virtops.libvirt.plugins.module_utils._migrate.read import Destination


class FakeError(Exception):
    def get_error_code(self):
        return 1

    def get_error_domain(self):
        return 0


LV = types.SimpleNamespace(
    libvirtError=FakeError,
    VIR_DOMAIN_RUNNING=1,
    VIR_DOMAIN_PAUSED=3,
    VIR_DOMAIN_PAUSED_MIGRATION=2,
    VIR_DOMAIN_PAUSED_STARTING_UP=11,
    VIR_DOMAIN_PAUSED_USER=1,
)
UUID = '6c6f8d3e-7d1e-4b52-9a55-0f1e2d3c4b5a'


class Incoming:
    """The guest libvirt creates on the destination for an incoming migration."""

    def __init__(self, persistent=False, state=(LV.VIR_DOMAIN_PAUSED, LV.VIR_DOMAIN_PAUSED_MIGRATION)):
        self.persistent = persistent
        self._state = state
        self.destroyed = threading.Event()

    def state(self):
        return list(self._state)

    def isPersistent(self):
        return int(self.persistent)

    def destroy(self):
        self.destroyed.set()


class DestConn:
    def __init__(self, incoming):
        self.incoming = incoming

    def lookupByUUIDString(self, uuid):
        if self.incoming is None or uuid != UUID:
            raise FakeError('Domain not found')
        return self.incoming


class Source:
    """A running guest whose migration ignores aborts; it fails once the incoming guest is gone."""

    def __init__(self, incoming, finishes_after=None):
        self.incoming = incoming
        self.finishes_after = finishes_after
        self.aborts = 0
        self.sent = 0
        self.done = threading.Event()

    def migrate3(self, dconn, params, flags):
        try:
            stopped = self.incoming.destroyed.wait(self.finishes_after or 30)
            if stopped:
                raise FakeError('operation failed: job migration out failed: Unable to write to socket')
            return self.incoming
        finally:
            self.done.set()

    def abortJob(self):
        self.aborts += 1

    def jobStats(self, flags):
        if self.done.is_set():
            raise FakeError('no job is active on the domain')
        self.sent += 1 << 20
        return {'data_processed': self.sent, 'data_total': 256 << 20}

    def isActive(self):
        return 1


class Client:
    uri = 'qemu:///system'
    libvirt = LV
    check_mode = False
    diff_mode = False

    def __init__(self, **params):
        self.params = dict(
            name='web1',
            dest_uri='qemu+ssh://host2/system',
            p2p=False,
            timeout=1,
            timeout_action='abort',
        )
        self.params.update(params)
        self.warnings = []

    def warn(self, msg):
        self.warnings.append(msg)


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(A, 'POLL_SECONDS', 0.02)
    monkeypatch.setattr(A, 'ABORT_GRACE_SECONDS', 0.1)


def migrate(client, source, incoming):
    params = client.params
    dest = Destination(LV, params['dest_uri'], conn=DestConn(incoming))
    options = dict(p2p=params['p2p'], timeout=params['timeout'], timeout_action=params['timeout_action'])
    return A.perform(client, dest, source, params['name'], 0, {}, True, UUID, **options)


class Silent(Source):
    """A source whose job statistics are never available."""

    def jobStats(self, flags):
        raise FakeError('statistics not available')


class Hanging(Source):
    """A source whose job-statistics call hangs until the migration ends (the polling loop is stuck)."""

    def jobStats(self, flags):
        self.done.wait(30)
        raise FakeError('no job is active on the domain')


@pytest.mark.parametrize(
    ('kind', 'why'),
    [
        # the polling loop sees data still sent after the accepted abort
        pytest.param(Source, 'the migration stream went on', id='stream goes on'),
        # the guard thread: timeout 1 s + 5 grace periods of 0.1 s, 1.5 s after the start
        pytest.param(Silent, 'had not ended 0.5 seconds after the timeout', id='no statistics'),
        pytest.param(Hanging, 'had not ended 0.5 seconds after the timeout', id='polling loop hangs'),
    ],
)
def test_an_abort_that_does_not_take_is_enforced_by_stopping_the_incoming_guest(kind, why):
    incoming = Incoming()
    client = Client()
    source = kind(incoming)
    with pytest.raises(TimeoutExpired) as failed:
        migrate(client, source, incoming)
    assert incoming.destroyed.is_set()
    if kind is Source:
        assert source.aborts >= 2  # repeated at every poll until the stream stopped
    assert 'was aborted (timeout_action=abort)' in str(failed.value)
    assert 'still runs on the source' in str(failed.value)
    wanted = '%s; the module stopped the incoming guest on qemu+ssh://host2/system' % why
    assert any(wanted in w for w in client.warnings), client.warnings


def test_no_guard_for_other_timeout_actions():
    incoming = Incoming()
    client = Client(timeout_action='suspend')
    source = Silent(incoming, finishes_after=1.8)
    source.suspend = lambda: None
    stats, _sample = migrate(client, source, incoming)
    assert not incoming.destroyed.is_set() and stats['timeout_action_taken'] == 'suspend'


@pytest.mark.parametrize(
    'incoming',
    [
        pytest.param(Incoming(persistent=True), id='persistent guest on the destination'),
        pytest.param(Incoming(state=(LV.VIR_DOMAIN_RUNNING, 1)), id='running guest on the destination'),
        pytest.param(Incoming(state=(LV.VIR_DOMAIN_PAUSED, LV.VIR_DOMAIN_PAUSED_USER)), id='paused by a user'),
    ],
)
def test_only_a_transient_guest_receiving_the_migration_is_stopped(incoming):
    client = Client()
    source = Source(incoming, finishes_after=1.4)
    stats, _sample = migrate(client, source, incoming)
    assert not incoming.destroyed.is_set()
    # the migration finished although libvirt took the abort: the result and a warning say so
    assert stats['timeout_action_taken'] == 'abort'
    assert any('migration completed before the abort took effect' in w for w in client.warnings)


def test_no_timeout_never_aborts():
    incoming = Incoming()
    client = Client(timeout=None)
    source = Source(incoming, finishes_after=0.3)
    stats, sample = migrate(client, source, incoming)
    assert source.aborts == 0 and not incoming.destroyed.is_set()
    assert 'timeout_action_taken' not in stats and sample['data_processed'] > 0
    assert client.warnings == []


@pytest.mark.parametrize(
    ('events', 'fires'),
    [
        # (time, stats) after an abort accepted at t=0; grace 1 s
        ([(0.1, 10), (0.6, 10), (1.2, 10)], False),  # stream stopped: a cancelled migration
        ([(0.1, 10), (0.6, 20), (1.2, 30)], True),  # still sending a second after the abort
        ([(0.1, 10), (0.6, 20), (0.9, 30)], False),  # not yet past the grace
        ([(0.1, None), (5.0, None)], False),  # no statistics: left to the deadline guard
    ],
)
def test_abort_watch(events, fires):
    watch = A.AbortWatch(1.0)
    assert watch.observe(0.0, {'data_processed': 5}) is False  # nothing accepted yet
    watch.accepted(0.0)
    watch.accepted(0.5)  # only the first acceptance counts
    seen = [watch.observe(t, None if sent is None else {'data_processed': sent}) for t, sent in events]
    assert any(seen) is fires
    assert seen.count(True) <= 1  # fires once
