# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the reliability suite and the hooks that print its figures and write
docs/reliability.md at the end of the session.

* ``pair`` - a pair of namespaced libvirtds (tests/hosts/second_host.py) for the whole session.
  Host ``a`` also serves libvirt's test driver: ``tdrv_uri`` is a *private* test:///default that
  no other test session touches, so whole-URI snapshots are meaningful there.
* ``agent_guest`` - the cached test guest running on qemu:///system with its agent answering and
  a data disk mounted at /data (freezable), booted once for the session.
* ``qemu``, ``uname``, ``test_image``, ``boot_spec`` - the integration fixtures.
"""

from __future__ import annotations

import os
import shutil
import time

import libvirt
import pytest
from hosts.second_host import HostPair
from integration.conftest import boot_spec, qemu, test_image, uname  # noqa: F401  pylint: disable=unused-import
from reliability_lib import DOC, FIGURES, STATE_DIR, agent_cmd, guest_read, render_matrix, run, testdrv_uri, write_doc
from virtops_helpers import IMAGE_DIR, PREFIX, use_ansible_collection_loader

use_ansible_collection_loader()  # (integration.conftest did already) module payloads need it

IMAGES = '/var/lib/libvirt/images'


@pytest.fixture(scope='session', autouse=True)
def _state_dir():
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    yield
    shutil.rmtree(STATE_DIR, ignore_errors=True)


@pytest.fixture(scope='session')
def pair():
    hosts = HostPair()
    try:
        hosts.start()
        yield hosts
    finally:
        hosts.stop()


@pytest.fixture(scope='session')
def tdrv_uri(pair):
    return testdrv_uri(pair.a)


@pytest.fixture(scope='session')
def tdrv(tdrv_uri):
    """Held open for the session: the test driver keeps its state while a connection is open."""
    conn = libvirt.open(tdrv_uri)
    yield conn
    conn.close()


@pytest.fixture
def figures():
    return FIGURES


@pytest.fixture(scope='session')
def agent_guest(qemu, boot_spec):  # noqa: F811 - fixtures imported above
    """(name, dom) of the running test guest; /data (ext4 on vda) mounted, agent answering."""
    name = PREFIX + 'rel-agent'
    image = os.path.join(IMAGES, name + '-data.img')
    shutil.copyfile(IMAGE_DIR / 'data.img', image)
    try:
        result = run(
            'guest',
            dict(
                boot_spec,
                name=name,
                disks=[dict(target='vda', path=image)],
                state='running',
                wait_for='agent',
                wait_timeout=240,
            ),
        )
        assert not result.get('failed'), result.get('msg')
        dom = qemu.lookupByName(name)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the agent starts before the init script mounts /data
            if ' /data ' in (guest_read(dom, '/proc/mounts') or ''):
                break
            time.sleep(0.5)
        assert ' /data ' in (guest_read(dom, '/proc/mounts') or ''), 'the data disk is not mounted at /data'
        yield name, dom
    finally:
        try:
            dom = qemu.lookupByName(name)
            if dom.isActive():
                try:
                    if agent_cmd(dom, 'guest-fsfreeze-status', timeout=5) == 'frozen':
                        agent_cmd(dom, 'guest-fsfreeze-thaw', timeout=10)
                except libvirt.libvirtError:
                    pass
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError:
            pass
        if os.path.exists(image):
            os.unlink(image)


# ---------------------------------------------------------------------------------------------
# figures: terminal summary and docs/reliability.md


def pytest_runtest_logreport(report):
    if report.when == 'call' or report.outcome == 'failed':
        previous = FIGURES.tests.get(report.nodeid)
        if previous != 'failed':
            FIGURES.tests[report.nodeid] = report.outcome


_DOC_STATUS = []


def pytest_sessionfinish(session):
    """Write docs/reliability.md once every section of the suite has reported (a partial run,
    -k or a single file, leaves the committed figures alone)."""
    if not FIGURES.tests:
        return
    target = os.environ.get('VIRTOPS_RELIABILITY_DOC') or str(DOC)
    if FIGURES.complete():
        write_doc(FIGURES, target)
        _DOC_STATUS.append('figures written to %s' % target)
    else:
        _DOC_STATUS.append('partial run: %s not written' % target)


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    if not FIGURES.tests:
        return
    tr.section('reliability figures')
    if FIGURES.matrix:
        lines = render_matrix(FIGURES.matrix)[0]
        for line in lines:
            tr.write_line(line)
    bad = FIGURES.bad_input
    if bad:
        tr.write_line(
            'bad input: %d inputs, %d failures, %d objects changed, %d snapshots'
            % (bad['inputs'], bad['failures'], bad['state_changes'], bad['snapshots'])
        )
    if FIGURES.faults:
        tr.write_line(
            'faults: %d injected, %d failed' % (len(FIGURES.faults), sum(not f['ok'] for f in FIGURES.faults))
        )
    for fault in FIGURES.faults:
        if not fault['ok']:
            tr.write_line('FAULT %s (%s): %s' % (fault['fault'], fault['target'], fault['detail'] or fault['outcome']))
    corpus = getattr(FIGURES, 'corpus', None)
    if corpus:
        checks = corpus['checks']
        tr.write_line(
            'corpus: %d generated, %d accepted by libvirt, %d/%d checks passed'
            % (
                corpus['generated'],
                corpus['accepted'],
                sum(passed for _label, passed, _tried in checks),
                sum(tried for _label, _passed, tried in checks),
            )
        )
        for label, passed, tried in checks:
            if passed != tried:
                tr.write_line('corpus FAIL %d/%d: %s' % (passed, tried, label))
    for section, seconds in sorted(FIGURES.timings.items()):
        tr.write_line('time %-28s %6.1f s' % (section, seconds))
    for section, text in sorted(FIGURES.findings):
        tr.write_line('FINDING [%s] %s' % (section, text.replace('\n', ' ')[:500]))
    for line in _DOC_STATUS:
        tr.write_line(line)
