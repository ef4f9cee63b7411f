# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the reliability suite: running modules and playbooks, snapshots of libvirt state,
namespaced-libvirtd fault injection, and the figures that end up in docs/reliability.md.

Everything here is plain code; the fixtures live in ``conftest.py`` next to this file.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import libvirt
from virtops_helpers import COLLECTIONS, PREFIX, ROOT, agent_cmd, ensure_collection_link, run_module
from virtops_helpers import guest_read as guest_read_bytes

# lookups of absent objects are normal here; keep libvirt from printing them
libvirt.registerErrorHandler(lambda ctx, err: None, None)

INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE
PYTHON = sys.executable
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / 'ansible-playbook')
DOC = ROOT / 'docs' / 'reliability.md'
# upload records of the volume module go to a scratch directory, never to /var/lib/virtops-libvirt
STATE_DIR = Path(tempfile.gettempdir()) / (PREFIX + 'reliability-state')
MODULE_ENV = {
    'VIRTOPS_LIBVIRT_STATE_DIR': str(STATE_DIR),
    # the image cache of volume url= downloads: removed with the state directory
    'VIRTOPS_LIBVIRT_CACHE_DIR': str(STATE_DIR / 'image-cache'),
    'no_proxy': '127.0.0.1,localhost',
    'NO_PROXY': '127.0.0.1,localhost',
}
WORKERS = int(os.environ.get('VIRTOPS_RELIABILITY_WORKERS', '3'))


# ---------------------------------------------------------------------------------------------
# running modules


def run(module, args, check=False, diff=True, timeout=300):
    """Run a module as Ansible does (the payload Ansible builds, in a subprocess) and return its
    JSON result.

    A traceback or a non-JSON answer fails the caller (virtops_helpers.run_module asserts it).
    """
    return run_module(module, args, check=check, diff=diff, env=MODULE_ENV, timeout=timeout)


def run_caught(module, args, check=False, diff=True, timeout=300):
    """Like :func:`run`, but a traceback / non-JSON answer is returned as a result with
    ``_traceback`` set instead of raising (for bulk runs that must record every outcome)."""
    try:
        return run(module, args, check=check, diff=diff, timeout=timeout)
    except AssertionError as exc:
        text = str(exc)
        return dict(failed=True, msg='', _traceback=_last_lines(text, 6), _rc=None, _stderr=text)
    except subprocess.TimeoutExpired:
        return dict(failed=True, msg='', _traceback='module did not finish within %ss' % timeout, _rc=None)


def ok(result):
    assert not result.get('failed'), result.get('msg')
    return result


def _last_lines(text, count):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return '\n'.join(lines[-count:])


def parallel(func, items, workers=WORKERS):
    """``[func(item) for item in items]`` on a small thread pool, results in input order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, items))


# ---------------------------------------------------------------------------------------------
# raw guest agent access, independent of the code under test


def guest_read(dom, path):
    """Text of a guest file, None when it does not exist."""
    data = guest_read_bytes(dom, path)
    return None if data is None else data.decode(errors='replace')


def freeze_status(dom):
    return agent_cmd(dom, 'guest-fsfreeze-status')


# ---------------------------------------------------------------------------------------------
# libvirt state snapshots

_POOL_NUMBERS = re.compile(r'\s*<(capacity|allocation|available)\b[^>]*>[^<]*</\1>')
# a read (by the snapshot itself, or a comparison) moves a file's atime; not libvirt state
_ATIME = re.compile(r'\s*<atime>[^<]*</atime>')


def _quiet(func, *args, default=None):
    try:
        return func(*args)
    except libvirt.libvirtError:
        return default


def snapshot(conn, keep=None, nodedevs=False, pool_numbers=True):
    """Every domain, network, storage pool (with its volumes) and optionally node device of
    ``conn`` whose name passes ``keep`` (default: all), as {kind/name: (xml..., flags)}.

    ``pool_numbers=False`` is for pools on real file systems: their capacity/allocation/available
    figures are dropped (they move with everything else written to the disk), and the pool is
    refreshed first, so that what libvirt caches about its volumes (a qcow2's cluster size appears
    only after a refresh, which the volume module may do) is current in every snapshot.
    """
    keep = keep or (lambda name: True)
    snap = {}
    for dom in conn.listAllDomains(0):
        name = dom.name()
        if not keep(name):
            continue
        persistent = _quiet(dom.isPersistent, default=0)
        snap['domain/' + name] = (
            _quiet(dom.XMLDesc, INACTIVE) if persistent else None,
            _quiet(dom.XMLDesc, 0),
            _quiet(dom.state, default=[None])[0],
            _quiet(dom.autostart) if persistent else None,
        )
    for net in conn.listAllNetworks(0):
        name = net.name()
        if keep(name):
            snap['network/' + name] = (
                _quiet(net.XMLDesc, libvirt.VIR_NETWORK_XML_INACTIVE),
                _quiet(net.XMLDesc, 0),
                _quiet(net.isActive),
                _quiet(net.autostart),
            )
    for pool in conn.listAllStoragePools(0):
        name = pool.name()
        active = _quiet(pool.isActive)
        if active and not pool_numbers and keep(name):
            _quiet(pool.refresh, 0)
        xml = _quiet(pool.XMLDesc, 0) or ''
        if not pool_numbers:
            xml = _POOL_NUMBERS.sub('', xml)
        if keep(name):
            snap['pool/' + name] = (xml, active, _quiet(pool.autostart))
        if active:
            for vol in _quiet(pool.listAllVolumes, 0, default=[]) or []:
                vname = vol.name()
                if keep(name) or keep(vname):
                    snap['volume/%s/%s' % (name, vname)] = _ATIME.sub('', _quiet(vol.XMLDesc, 0) or '')
    if nodedevs:
        for dev in conn.listAllDevices(0):
            snap['nodedev/' + dev.name()] = _quiet(dev.XMLDesc, 0)
    return snap


def snapshot_diff(before, after):
    """Names of the objects that appeared, disappeared or changed."""
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return dict(
        appeared=sorted(set(after) - set(before)),
        disappeared=sorted(set(before) - set(after)),
        changed=changed,
    )


def own(name):
    """Objects of this session (PREFIX) - on connections other sessions share."""
    return name.startswith(PREFIX)


def not_foreign(name):
    """Everything except other test sessions' objects (vtest-<other hex>-...)."""
    return name.startswith(PREFIX) or not name.startswith('vtest-')


# ---------------------------------------------------------------------------------------------
# the namespaced libvirtd of a HostPair host: kill, stop, continue, restart


class Daemon:
    """Fault injection on one host of a :class:`hosts.second_host.HostPair` (never the main
    libvirtd). Its virtlogd keeps the host's namespaces alive while libvirtd is down."""

    def __init__(self, host):
        self.host = host
        self.state_dir = host.state_dir

    def pid(self):
        return int(Path(self.state_dir, 'libvirtd.pid').read_text().strip())

    def _anchor(self):
        return int(Path(self.state_dir, 'virtlogd.pid').read_text().strip())

    def alive(self):
        try:
            os.kill(self.pid(), 0)
            return True
        except (OSError, ValueError):
            return False

    def kill(self):
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path('/proc/%d' % pid).exists():
            time.sleep(0.02)

    def stop(self):
        os.kill(self.pid(), signal.SIGSTOP)

    def cont(self):
        os.kill(self.pid(), signal.SIGCONT)

    def restart(self):
        """Start libvirtd again inside the host's network, mount and UTS namespaces."""
        subprocess.run(
            [
                'nsenter',
                '-t',
                str(self._anchor()),
                '-m',
                '-u',
                '-n',
                '--',
                'libvirtd',
                '-d',
                '-l',
                '-p',
                str(Path(self.state_dir, 'libvirtd.pid')),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = libvirt.open(self.host.uri)
                conn.close()
                return
            except libvirt.libvirtError:
                time.sleep(0.05)
        raise AssertionError('libvirtd of %s did not come back' % self.host.name)

    def nsexec(self, *argv, check=True):
        """Run a command in the host's mount namespace (its private /var/lib/libvirt)."""
        return subprocess.run(
            ['nsenter', '-t', str(self._anchor()), '-m', '-u', '-n', '--', *argv],
            check=check,
            capture_output=True,
            text=True,
            timeout=60,
        )


def testdrv_uri(host):
    """libvirt's test driver served by a pair host's libvirtd: a private test:///default that no
    other test session touches."""
    return 'test+unix:///default?socket=' + host.uri.split('socket=', 1)[1]


# ---------------------------------------------------------------------------------------------
# ansible-playbook


def playbook_env(tmp, extra=None):
    env = dict(os.environ)
    env.pop('LIBVIRT_DEFAULT_URI', None)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(ensure_collection_link() and COLLECTIONS),
        ANSIBLE_NOCOLOR='1',
        ANSIBLE_FORCE_COLOR='0',
        ANSIBLE_LOCAL_TEMP=str(Path(tmp) / 'ansible-local'),
        ANSIBLE_REMOTE_TEMP=str(Path(tmp) / 'ansible-remote'),
        ANSIBLE_RETRY_FILES_ENABLED='0',
        ANSIBLE_PIPELINING='1',
        ANSIBLE_DEPRECATION_WARNINGS='0',
        ANSIBLE_LOCALHOST_WARNING='0',
        ANSIBLE_INVENTORY_UNPARSED_WARNING='0',
    )
    env.update(MODULE_ENV)
    env.update(extra or {})
    return env


def playbook_cmd(path, *args):
    return [
        ANSIBLE_PLAYBOOK,
        '-i',
        'localhost,',
        '-c',
        'local',
        '-e',
        'ansible_python_interpreter=%s' % PYTHON,
        *args,
        str(path),
    ]


def run_playbook(path, tmp, *args, env=None, timeout=300):
    proc = subprocess.run(
        playbook_cmd(path, *args),
        capture_output=True,
        text=True,
        env=playbook_env(tmp, env),
        cwd=str(tmp),
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


TASK_LINE = re.compile(r'^TASK \[(?P<name>[^\]]*)\]')
STATUS_LINE = re.compile(r'^(?P<status>ok|changed|failed|fatal|skipping):\s+\[localhost\]')


def task_outcomes(output):
    """[(task name, status), ...] from the default callback's output."""
    outcomes = []
    task = None
    for line in output.splitlines():
        match = TASK_LINE.match(line)
        if match:
            task = match.group('name')
            continue
        match = STATUS_LINE.match(line)
        if match and task is not None:
            outcomes.append((task, match.group('status')))
    return outcomes


# ---------------------------------------------------------------------------------------------
# figures -> docs/reliability.md


def scrub(text):
    """Make a text deterministic and free of session details (PREFIX, pair sockets)."""
    text = str(text)
    text = text.replace(PREFIX, '<P>')
    text = re.sub(r'vtest-[0-9a-f]{6}-', '<P>', text)
    text = re.sub(r'/var/lib/virtops-hosts/[a-z0-9]+/', '/var/lib/virtops-hosts/<RUN>/', text)
    text = re.sub(r'/var/lib/virtops-shared-[a-z0-9]+', '/var/lib/virtops-shared-<RUN>', text)
    text = re.sub(r'virtops-[a-z0-9]{2,8}-([ab])\b', r'virtops-<RUN>-\1', text)
    text = re.sub(r'vo-[a-z0-9]{1,8}-([ab])\b', r'vo-<RUN>-\1', text)
    text = re.sub(r'/tmp/[^\s\'"]*', '/tmp/<TMP>', text)
    text = re.sub(r'(_definition\)):\d+:', r'\1:<LINE>:', text)  # libvirt's parser line numbers
    text = re.sub(r'\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b', '<UUID>', text)
    return text


_CLASSES = (
    ('cannot connect to libvirt at', 'cannot connect (message names uri)'),
    ('did not shut down within shutdown_timeout', 'timed out (message names shutdown_timeout and force)'),
    ('did not answer', 'the agent did not answer within the timeout'),
    ('quiesce: the guest agent', 'the agent does not answer (message names quiesce)'),
    ('has no guest agent channel', 'no agent channel (message names quiesce)'),
    ('agent is not connected', 'the agent is not connected'),
    ('broken pipe', 'lost the connection to libvirtd'),
    ('end of file while reading', 'lost the connection to libvirtd'),
    ('client socket is closed', 'lost the connection to libvirtd'),
    ('cannot recv data', 'lost the connection to libvirtd'),
    ('cannot write data', 'lost the connection to libvirtd'),
    ('connection reset', 'lost the connection to libvirtd'),
    ('free space there, then run the task again', 'file system full (the message names it)'),
    ('no space left on device', 'no space left on device'),
    ('already exists', 'already exists'),
    ('not found', 'not found'),
    ('is not active', 'not active'),
    ('is active', 'already active'),
    ('task failed: module failed', 'unhandled exception in the module'),
)


def classify(result):
    """A short, timing-independent description of a module result (for the doc)."""
    if not result.get('failed'):
        return 'ok, changed=%s' % result.get('changed')
    text = (result.get('msg') or result.get('_traceback') or '').lower()
    for needle, label in _CLASSES:
        if needle in text:
            return 'failed: ' + label
    return 'failed: ' + scrub(result.get('msg') or '')[:80]


class Figures:
    """What the suite measured; thread-safe; rendered once at the end of the session."""

    SECTIONS = ('matrix', 'bad_input', 'faults', 'concurrency', 'secrets', 'frozen', 'hostdev')

    def __init__(self):
        self.lock = threading.Lock()
        self.matrix = []  # dicts: module, label, uri, cells{col: True/False/None}, notes[]
        self.bad_input = None  # dict
        self.faults = []  # dicts: fault, target, expectation, outcome, ok
        self.concurrency = None
        self.concurrency_bulk = None  # lines: two controllers' objects tasks (test_concurrency)
        self.secrets = None
        self.secret_values = None  # libvirt secret values (test_secrets.py), rendered with secrets
        self.luks_values = None  # LUKS passphrases of volumes (test_secrets.py), rendered with secrets
        self.frozen = None
        self.hostdev = None
        self.corpus = None  # dict: see test_corpus._figures (not required by complete())
        self.injection = None  # dicts: path, step, injected, outcome, half_applied, lost (test_injection)
        self.injection_races = None  # dict: exactly-once absent, absent racing running (test_injection)
        self.findings = []  # (section, text)
        self.timings = {}  # section -> seconds (terminal only, not in the doc)
        self.tests = {}  # nodeid -> outcome

    def finding(self, section, text):
        with self.lock:
            entry = (section, scrub(text))
            if entry not in self.findings:
                self.findings.append(entry)

    def add_fault(self, fault, target, expectation, outcome, passed, lost=0, detail=''):
        """``outcome`` goes to the doc (keep it free of timing-dependent text: use classify());
        ``detail`` (raw messages, sizes) only to the test output."""
        with self.lock:
            self.faults.append(
                dict(
                    fault=fault,
                    target=target,
                    expectation=expectation,
                    outcome=scrub(outcome),
                    ok=bool(passed),
                    lost=lost,
                    detail=scrub(detail),
                )
            )
            if not passed:
                self.findings.append(
                    ('faults', scrub('%s (%s): expected %s; observed %s' % (fault, target, expectation, outcome)))
                )

    def complete(self):
        return bool(self.matrix) and all(
            getattr(self, name) for name in ('bad_input', 'faults', 'concurrency', 'secrets', 'frozen', 'hostdev')
        )


FIGURES = Figures()

MATRIX_COLUMNS = (
    ('first', 'first run changed'),
    ('rerun', 're-run unchanged'),
    ('check', 'check mode predicts changed'),
    ('pure', 'check mode mutates nothing'),
    ('diff', 'diff present when changed'),
    ('check2', 'check mode after convergence unchanged'),
)


def _cell(value):
    return {True: 'pass', False: '**FAIL**', None: 'n/a'}[value]


def render_matrix(rows, markdown=True):
    lines = []
    head = ['module', 'state / action', 'URI'] + [title for _key, title in MATRIX_COLUMNS]
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    totals = {key: [0, 0] for key, _title in MATRIX_COLUMNS}
    for row in rows:
        cells = []
        for key, _title in MATRIX_COLUMNS:
            value = row['cells'].get(key)
            cells.append(_cell(value))
            if value is not None:
                totals[key][1] += 1
                totals[key][0] += int(bool(value))
        lines.append('| %s | %s | %s | %s |' % (row['module'], row['label'], row['uri'], ' | '.join(cells)))
    lines.append(
        '| **passed** | **%d rows** | | %s |'
        % (len(rows), ' | '.join('**%d/%d**' % tuple(totals[key]) for key, _title in MATRIX_COLUMNS))
    )
    return lines, totals


def render_doc(fig):
    out = []
    w = out.append
    w('# Reliability figures')
    w('')
    w('Written by the reliability suite (`tests/reliability/`, part of `make test`) at the end of its')
    w('session; do not edit by hand. Only counts and outcomes are recorded, so the file changes only')
    w('when a result changes. `<P>` stands for the session prefix of test object names; timings are')
    w('printed in the test output, not here.')
    w('')
    failed_tests = sorted(k for k, v in fig.tests.items() if v == 'failed')
    w('Tests: %d run, %d passed, %d failed.' % (len(fig.tests), len(fig.tests) - len(failed_tests), len(failed_tests)))
    w('')
    # ---- summary
    bad = fig.bad_input or {}
    matrix_lines, totals = render_matrix(fig.matrix)
    cells = sum(t[1] for t in totals.values())
    cells_ok = sum(t[0] for t in totals.values())
    conc = fig.concurrency or {}
    sec = fig.secrets or {}
    frz = fig.frozen or {}
    hd = fig.hostdev or {}
    w('## Summary')
    w('')
    w('| area | tried | failures | lost |')
    w('|---|---|---|---|')
    w('| idempotency matrix | %d rows, %d checks | %d | - |' % (len(fig.matrix), cells, cells - cells_ok))
    w(
        '| bad input (hypothesis) | %d inputs | %d | %d objects changed |'
        % (bad.get('inputs', 0), bad.get('failures', 0), bad.get('state_changes', 0))
    )
    w(
        '| faults | %d injected | %d | %d |'
        % (len(fig.faults), sum(not f['ok'] for f in fig.faults), sum(f.get('lost', 0) for f in fig.faults))
    )
    w(
        '| concurrency | %d playbook runs, %d module runs | %d | %d |'
        % (conc.get('playbooks', 0), conc.get('module_runs', 0), conc.get('failures', 0), conc.get('lost', 0))
    )
    w(
        '| secrets | %d places searched for %d canaries | %d leaks | - |'
        % (sec.get('places', 0), sec.get('canaries', 0), sec.get('leaks', 0))
    )
    w(
        '| frozen guest | %d failure variants | %d left frozen | - |'
        % (frz.get('variants', 0), frz.get('left_frozen', 0))
    )
    w(
        '| hostdev safety | %d attempts on %d host devices | %d not refused | %d bindings changed |'
        % (hd.get('attempts', 0), hd.get('devices', 0), hd.get('not_refused', 0), hd.get('bindings_changed', 0))
    )
    if fig.injection:
        inj = injection_summary(fig.injection)
        w(
            '| failure injection | %d failures at %d steps of %d paths | %d half-applied | %d |'
            % (inj['injected'], inj['steps'], inj['paths'], inj['half_applied'], inj['lost'])
        )
    if fig.corpus:
        corpus_checks = fig.corpus.get('checks', [])
        w(
            '| definition corpus (virt-install) | %d XMLs, %d accepted, %d checks | %d | - |'
            % (
                fig.corpus.get('generated', 0),
                fig.corpus.get('accepted', 0),
                sum(tried for _label, _passed, tried in corpus_checks),
                sum(tried - passed for _label, passed, tried in corpus_checks),
            )
        )
    w('')
    # ---- matrix
    w('## Idempotency matrix')
    w('')
    w('Every module and state/action: check mode first (it must predict `changed` and leave')
    w("libvirt's XML and state as they were), then the real run (`changed`, with a diff), the")
    w('same task again (`changed: false`, no diff) and check mode once more (`changed: false`).')
    w('Read-only modules/actions must never report a change or mutate anything; `exec`, `set_time`')
    w('and `set_password` of guest_agent always report a change by design (documented), so their')
    w("re-run column is n/a. `test` is libvirt's test driver (`test+unix:///default`) served by a")
    w('private namespaced libvirtd, `pair qemu` the QEMU driver of the namespaced test hosts, `qemu`')
    w("this machine's `qemu:///system`.")
    w('')
    out.extend(matrix_lines)
    w('')
    notes = [(r['module'], r['label'], n) for r in fig.matrix for n in r.get('notes', [])]
    if notes:
        w('Failed checks:')
        w('')
        for module, label, note in notes:
            w('- %s %s: %s' % (module, label, scrub(note)))
        w('')
    # ---- bad input
    w('## Bad input')
    w('')
    w('Generated with hypothesis (`derandomize=True`, no example database), each input run as its own')
    w('module process. An input passes when the module fails cleanly (`failed`, no traceback, not')
    w('`changed`) with a message naming the option, and the XML of every domain, network, pool,')
    w('volume and node device on the URIs is byte-identical before and after.')
    w('')
    w('| module | inputs | clean failures naming the option | findings |')
    w('|---|---|---|---|')
    for module, row in sorted((bad.get('modules') or {}).items()):
        w('| %s | %d | %d | %d |' % (module, row['inputs'], row['passed'], row['inputs'] - row['passed']))
    w(
        '| **all** | **%d** | **%d** | **%d** |'
        % (bad.get('inputs', 0), bad.get('inputs', 0) - bad.get('failures', 0), bad.get('failures', 0))
    )
    w('')
    w('| category | inputs |')
    w('|---|---|')
    for category, count in sorted((bad.get('categories') or {}).items()):
        w('| %s | %d |' % (category, count))
    w('')
    w('State snapshots compared: %d (objects changed: %d).' % (bad.get('snapshots', 0), bad.get('state_changes', 0)))
    w('')
    # ---- faults
    w('## Faults')
    w('')
    w('| fault | target | expectation | outcome | result |')
    w('|---|---|---|---|---|')
    for f in fig.faults:
        w(
            '| %s | %s | %s | %s | %s |'
            % (
                f['fault'],
                f['target'],
                f['expectation'],
                f['outcome'].replace('|', '/'),
                'pass' if f['ok'] else '**FAIL**',
            )
        )
    w('')
    # ---- concurrency
    w('## Concurrency')
    w('')
    for line in conc.get('lines', []):
        w(line)
    w('')
    if fig.concurrency_bulk:
        for line in fig.concurrency_bulk:
            w(line)
        w('')
    # ---- secrets
    w('## Secrets')
    w('')
    luks = (fig.luks_values or {}).get('lines', [])
    for line in sec.get('lines', []) + (fig.secret_values or {}).get('lines', []) + luks:
        w(line)
    w('')
    # ---- frozen
    w('## Frozen-guest safety')
    w('')
    for line in frz.get('lines', []):
        w(line)
    w('')
    # ---- hostdev
    w('## Host device safety')
    w('')
    for line in hd.get('lines', []):
        w(line)
    w('')
    # ---- corpus
    if fig.corpus:
        out.extend(render_corpus(fig.corpus))
    # ---- failure injection
    if fig.injection:
        out.extend(render_injection(fig.injection, fig.injection_races or {}))
    # ---- findings
    w('## Findings')
    w('')
    if not fig.findings and not failed_tests:
        w('None.')
    for section, text in sorted(fig.findings):
        w('- [%s] %s' % (section, text.replace('\n', ' ')))
    if failed_tests:
        w('')
        w('Failed tests: ' + ', '.join('`%s`' % t for t in failed_tests))
    w('')
    return '\n'.join(out)


def injection_summary(rows):
    paths = sorted({r['path'] for r in rows})
    steps = sorted({(r['path'], r['step']) for r in rows})
    return dict(
        paths=len(paths),
        steps=len(steps),
        injected=len(rows),
        half_applied=sum(bool(r['half_applied']) for r in rows),
        lost=sum(r.get('lost', 0) for r in rows),
    )


def render_injection(rows, races):
    """The failure-injection section (tests/reliability/test_injection.py)."""
    out = ['## Failure injection', '']
    w = out.append
    total = injection_summary(rows)
    w('Every multi-step path of `guest` made to fail at each of its steps on qemu:///system: a libvirt')
    w('call fails with a real `libvirtError` code (the module runs in-process with that libvirt-python')
    w('method replaced), or libvirt/QEMU really refuses. The rule: nothing changed (`changed: false`,')
    w("libvirt's definition, run state, autostart and live configuration as before), or `changed: true`")
    w('with exactly the applied steps in `actions` and a message saying what was done and what is left.')
    w('A failure that breaks the rule counts as half-applied.')
    w('')
    w(
        '%d paths, %d steps, %d failures injected; half-applied: %d; data lost: %d.'
        % (total['paths'], total['steps'], total['injected'], total['half_applied'], total['lost'])
    )
    w('')
    w('| path | step | failure injected | outcome | result |')
    w('|---|---|---|---|---|')
    for r in rows:
        w(
            '| %s | %s | %s | %s | %s |'
            % (
                r['path'],
                r['step'],
                r['injected'],
                r['outcome'].replace('|', '/'),
                '**HALF-APPLIED**' if r['half_applied'] else 'pass',
            )
        )
    w('')
    if races:
        w(
            'Races (two module processes at once, %d rounds each): concurrent `state: absent` on one guest '
            'reported `changed` exactly once in %d of %d rounds; `absent` racing `running` ended in one of '
            'the two states in %d of %d rounds.'
            % (
                max(races.get('absent_rounds', 0), races.get('racing_rounds', 0)),
                races.get('absent_exactly_once', 0),
                races.get('absent_rounds', 0),
                races.get('racing_ok', 0),
                races.get('racing_rounds', 0),
            )
        )
        w('')
    return out


def render_corpus(corpus):
    """The definition corpus section (tests/reliability/test_corpus.py)."""
    out = ['## Definition corpus', '']
    w = out.append
    w('Domain XMLs nobody here wrote: `virt-install --print-xml --dry-run` on qemu:///system over a matrix')
    w('of machine types, firmware (BIOS, UEFI, secure boot), TPM, CD-ROMs, disk buses, NICs, graphics,')
    w('video, consoles/channels, sound, watchdog, rng, memballoon, CPU modes, NUMA/hugepages,')
    w('iotune and `--osinfo` variants (tests/reliability/corpus.py). Adoption: the XML defined as')
    w(
        'virt-install does it (%d of them by a real `virt-install --import --noreboot`), then `guest` with'
        % corpus.get('real_virt_install', 0)
    )
    w('typed options only (memory, vcpus, machine); then every simple typed option, and the full disk and')
    w('interface lists, restated as libvirt has them (must be a no-op).')
    w('')
    w('| check | passed | of |')
    w('|---|---|---|')
    w('| generated by virt-install | %d | %d |' % (corpus.get('generated', 0), corpus.get('entries', 0)))
    w('| accepted by libvirt | %d | %d |' % (corpus.get('accepted', 0), corpus.get('generated', 0)))
    for label, passed, tried in corpus.get('checks', []):
        w('| %s | %d | %d |' % (label, passed, tried))
    w('')
    rejections = corpus.get('rejections') or {}
    if rejections:
        w('Rejected by libvirt:')
        w('')
        for reason, count in sorted(rejections.items()):
            w('- %d x %s' % (count, reason.replace('\n', ' ')))
        w('')
    failures = corpus.get('failures') or []
    if failures:
        w('Failed entries (first failed check):')
        w('')
        for line in failures:
            w('- ' + line.replace('|', '/'))
        w('')
    return out


def write_doc(fig, path=DOC):
    text = render_doc(fig)
    Path(path).write_text(text)
    return text


def dump_json(obj):
    return json.dumps(obj, sort_keys=True, default=str)
