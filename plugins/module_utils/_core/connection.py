# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one libvirt connection wrapper every module of the collection uses.

``run_module(spec, Runner)`` builds the AnsibleModule from the module's own spec merged with
:data:`CONNECTION_SPEC`, reports a missing libvirt-python through ``missing_required_lib``, opens
one connection (SASL credentials when given), runs ``Runner(client).run()`` and turns every
:class:`LibvirtModuleError` into one clean ``fail_json`` - ``changed: true`` with the steps
already applied (``runner.result.actions``) when the failure came after a change. Nothing is imported or connected at
module import time.
"""

from __future__ import annotations

import threading
import traceback
from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.virtops.libvirt.plugins.module_utils._core import errors
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import ArgumentSpec
from ansible_collections.virtops.libvirt.plugins.module_utils._core.lock import ObjectLocks

LIBVIRT_IMPORT_ERROR = None
try:
    import libvirt  # pylint: disable=import-error
except ImportError:  # pragma: no cover - exercised by the missing-library test
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()

DEFAULT_URI = 'qemu:///system'

CONNECTION_SPEC = ArgumentSpec(
    dict(
        uri=dict(type='str', default=DEFAULT_URI, fallback=(env_fallback, ['LIBVIRT_DEFAULT_URI'])),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
    ),
    required_together=[('username', 'password')],
)


_LOCAL_HOSTS = ('localhost', '127.0.0.1', '::1')
_LABELS = dict(guest='guest', pool='storage pool', network='network', nodedev='host device')


def is_local(uri):
    """The one answer to "does ``uri`` reach the libvirt daemon of the machine this module runs
    on": no host part (or a loopback name), whatever the transport. The test driver is local too:
    callers that need real host resources check ``client.is_test_driver`` as well."""
    if not uri or '://' not in uri:
        return True  # '' or an alias: libvirt's default, on this machine
    parts = urlsplit(uri)
    try:
        host = parts.hostname
    except ValueError:
        return False
    return not host or host.lower() in _LOCAL_HOSTS


def daemon_key(uri, local):
    """The one name of the libvirt daemon ``uri`` reaches (``local``: on this machine, see
    :func:`is_local`), for everything kept per daemon on the managed host: object locks,
    upload records, secret value records. Driver, host (``local`` for this machine) and path of
    the URI: ``qemu:///system`` and ``qemu+unix:///system`` are one daemon, the same UUID on two
    hosts (common for Ceph secrets) is two."""
    parts = urlsplit(uri or '')
    driver = (parts.scheme.split('+')[0] or 'default').lower()
    try:
        host = 'local' if local else (parts.hostname or 'local')
    except ValueError:
        host = 'unknown'
    path = (parts.path or '/').strip('/').replace('/', '_') or 'default'
    key = '%s-%s-%s' % (driver, host, path)
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in key)


class Connection:
    """One lazily opened libvirt connection to ``uri``: the one place where libvirt's errors are
    translated (:meth:`call`) and objects are looked up. :class:`LibvirtClient` is the module's
    own; ``migrate`` opens a second one to its destination."""

    # reconnect and retry once when the daemon went away (a restart between two calls)
    reconnects = True

    def __init__(self, libvirt_module, uri, conn=None):
        self.libvirt = libvirt_module
        self.uri = uri
        self.is_local = is_local(uri)
        self.is_test_driver = urlsplit(uri or '').scheme.split('+')[0] == 'test'
        self._conn = conn  # None: opened on first use
        # the daemon's one name for what is kept per daemon on this host (locks, records)
        self.daemon = daemon_key(uri, self.is_local)
        # one run at a time per object on this host (see _core/lock.py); the private test driver
        # (test:///..., no daemon) is every process's own
        self.locks = ObjectLocks(self.daemon, enabled=self.is_local and urlsplit(uri or '').scheme != 'test')

    @property
    def conn(self):
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self):
        try:
            return self.libvirt.open(self.uri)
        except self.libvirt.libvirtError as exc:
            raise errors.connect_error(self.libvirt, exc, self.uri) from None

    def reconnect(self):
        """Drop a dead connection and open a new one (used once after a daemon restart)."""
        self._close_quietly()
        self._conn = self._open()
        return self._conn

    def close(self):
        self._close_quietly()
        self.locks.release()

    def _close_quietly(self):
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.close()
        except self.libvirt.libvirtError:
            pass  # the daemon is already gone; nothing to release

    # -- calls ----------------------------------------------------------------------------
    def error(self, exc, what=None):
        """``exc`` (a libvirtError) as the collection's typed error, naming this URI."""
        return errors.translate(self.libvirt, exc, what=what, uri=self.uri)

    def call(self, func, *args, what=None, retry=True):
        """Call ``func(*args)`` translating libvirtError; reconnect and retry once when the
        daemon went away. ``func`` may be a callable taking the connection first when given as
        a string method name of the connection."""
        try:
            if isinstance(func, str):
                return getattr(self.conn, func)(*args)
            return func(*args)
        except self.libvirt.libvirtError as exc:
            if retry and self.reconnects and isinstance(func, str) and errors.is_connection_lost(self.libvirt, exc):
                self.reconnect()
                return self.call(func, *args, what=what, retry=False)
            raise self.error(exc, what) from None

    def call_unless_done(self, func, *args, done, what=None):
        """Call ``func(*args)`` for a change that a concurrent run may have made first. When
        libvirt refuses, ``done(exc)`` decides: True when the wanted state holds anyway (the
        object is already started, stopped, gone ...), else the error is raised, translated.
        Returns True when this call made the change, False when another run had."""
        try:
            func(*args)
        except self.libvirt.libvirtError as exc:
            if done(exc):
                return False
            raise self.error(exc, what) from None
        return True

    def hold(self, kind, name):
        """Before the first read of the object this run manages (``kind`` guest, pool, network,
        volume ``pool/name``): wait until no other run on this host works on it, and keep it
        until the module ends (see ``_core/lock.py``). The daemon is reached first, so that a
        daemon that is down fails the task at once."""
        if self.locks.enabled:
            self.conn  # noqa: B018 - opens the connection
        self.locks.hold(kind, name)

    def hold_all(self, keys):
        """:meth:`hold` for several objects at once (``[(kind, name)]``), in one order."""
        if self.locks.enabled:
            self.conn  # noqa: B018 - opens the connection
        self.locks.hold_all(keys)

    def lookup(self, kind, name, lookup=None):
        """Return the object or None when it does not exist."""
        method = (
            lookup
            or {
                'guest': 'lookupByName',
                'pool': 'storagePoolLookupByName',
                'network': 'networkLookupByName',
                'nodedev': 'nodeDeviceLookupByName',
            }[kind]
        )
        if isinstance(name, str) and '\x00' in name:
            return None  # no libvirt object has a NUL in its name (the C API cannot even take one)
        lv = self.libvirt
        try:
            return getattr(self.conn, method)(name)
        except lv.libvirtError as exc:
            if errors.is_not_found(lv, exc):
                return None
            if self.reconnects and errors.is_connection_lost(lv, exc):
                self.reconnect()
                return self.lookup(kind, name, lookup)
            raise self.error(exc, "%s '%s'" % (kind, name)) from None

    def lookup_again(self, kind, name):
        """The object a plan was made for, looked up again while applying it: raises
        ObjectNotFound when it is gone (removed by a concurrent run meanwhile)."""
        obj = self.lookup(kind, name)
        if obj is None:
            raise errors.ObjectNotFound(
                "%s '%s' disappeared while this task changed it (removed by a concurrent run?)" % (_LABELS[kind], name)
            )
        return obj

    def is_error(self, exc, *names):
        return errors.is_code(self.libvirt, exc, *names)


class LibvirtClient(Connection):
    """The module's connection: holds the AnsibleModule (params, check and diff mode, warnings,
    values to mask) and one lazily opened libvirt connection with the module's credentials."""

    def __init__(self, module):
        super().__init__(libvirt, module.params['uri'])
        self.module = module
        self.params = module.params
        self.check_mode = module.check_mode
        self.diff_mode = module._diff
        # a password in the URI is masked wherever Ansible prints the task (invocation included)
        secrets = errors.url_secrets(self.uri, keep_user=True)
        if secrets:
            self.hide(secrets)
        self.events_enabled = False

    def hide(self, values):
        """Mask ``values`` (secrets found inside options, such as a password in a URI or in
        user XML) wherever Ansible prints this task, its invocation included."""
        values = {value for value in values if value}
        if values:
            self.module.no_log_values.update(values)

    def enable_events(self):
        """Run libvirt's default event loop in a daemon thread (needed for domain events).

        Must be called before the connection is first used; later calls are no-ops.
        """
        if self.events_enabled:
            return
        if self._conn is not None:
            raise RuntimeError('enable_events() must be called before the connection is opened')
        _start_event_loop()
        self.events_enabled = True

    def _open(self):
        username = self.params.get('username')
        if username is None:
            return super()._open()
        lv = self.libvirt
        try:
            return lv.openAuth(
                self.uri,
                [
                    [lv.VIR_CRED_AUTHNAME, lv.VIR_CRED_PASSPHRASE, lv.VIR_CRED_NOECHOPROMPT, lv.VIR_CRED_ECHOPROMPT],
                    self._auth_callback,
                    None,
                ],
                0,
            )
        except lv.libvirtError as exc:
            raise errors.connect_error(lv, exc, self.uri) from None

    def _auth_callback(self, credentials, user_data):
        lv = self.libvirt
        for cred in credentials:
            if cred[0] in (lv.VIR_CRED_AUTHNAME, lv.VIR_CRED_ECHOPROMPT):
                cred[4] = self.params['username']
            elif cred[0] in (lv.VIR_CRED_PASSPHRASE, lv.VIR_CRED_NOECHOPROMPT):
                cred[4] = self.params['password']
            else:
                return -1
        return 0

    def fail(self, msg, **kwargs):
        self.close()
        self.module.fail_json(msg=msg, **kwargs)

    def warn(self, msg):
        self.module.warn(msg)


def undefine_again(libvirt_module, obj):
    """Stop (when active) and undefine ``obj``, a pool or network this task has just defined,
    after a later step failed. Returns None when it is gone again, else the libvirtError of the
    undo (the object then stays, and the caller reports the steps done)."""
    try:
        if obj.isActive():
            obj.destroy()
        obj.undefine()
    except libvirt_module.libvirtError as undo:
        return undo
    return None


_EVENT_LOOP = {}


def _start_event_loop():
    if _EVENT_LOOP:
        return
    libvirt.virEventRegisterDefaultImpl()

    def loop():
        while True:
            libvirt.virEventRunDefaultImpl()

    thread = threading.Thread(target=loop, name='libvirt-events', daemon=True)
    thread.start()
    _EVENT_LOOP['thread'] = thread


def run_module(spec, runner_class, supports_check_mode=True):
    """Entry point shared by every module: build, connect, run, report."""
    full_spec = ArgumentSpec().merge(spec).merge(CONNECTION_SPEC)
    module = full_spec.create_ansible_module(supports_check_mode=supports_check_mode)
    if libvirt is None:
        module.fail_json(
            msg=missing_required_lib('libvirt-python (import name: libvirt)'), exception=LIBVIRT_IMPORT_ERROR
        )
    # libvirt prints errors to stderr by default; the module reports them itself.
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    client = LibvirtClient(module)
    runner = None
    try:
        runner = runner_class(client)
        result = runner.run()
    except errors.LibvirtModuleError as exc:
        client.close()
        module.fail_json(**failure_result(exc, runner))
    client.close()
    module.exit_json(**result)


def failure_result(exc, runner):
    """``fail_json`` keys for ``exc`` raised by ``runner``: when steps were already applied
    (the runner's ``result.actions``, outside check mode) ``changed: true``, those ``actions``
    and a message that says what was done before the failure; else ``changed: false``."""
    result = getattr(runner, 'result', None)
    failure = getattr(result, 'failure', None)
    if failure is not None:
        return failure(exc.msg, **exc.details)
    return dict(exc.details, msg=exc.msg, changed=False)
