# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Typed errors raised by the service layer and caught once per module.

Only ``LibvirtModuleError`` (and subclasses) ever reach a module's ``run_module()``;
a ``libvirt.libvirtError`` is translated by :func:`translate` into one of them with a
message a user can act on.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# ``scheme://userinfo@``: the userinfo is everything up to the last '@' before the path
_USERINFO = re.compile(r'(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s]*)@')
REDACTED = '***'


class LibvirtModuleError(Exception):
    """Base class: ``msg`` is shown to the user, ``details`` become extra result keys."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class InvalidParameter(LibvirtModuleError):
    """Bad user input. The message always names the offending option."""

    def __init__(self, option, msg, **details):
        super().__init__('%s: %s' % (option, msg), **details)
        self.option = option


class ConnectionFailed(LibvirtModuleError):
    """The hypervisor connection could not be opened (daemon down, auth, permissions)."""


class ObjectNotFound(LibvirtModuleError):
    """A named libvirt object (guest, pool, volume, network, device) does not exist."""


class OperationFailed(LibvirtModuleError):
    """libvirt refused or failed an operation."""


class TimeoutExpired(LibvirtModuleError):
    """A bounded wait ran out."""


# ---------------------------------------------------------------------------------------------
# secrets in URLs (``url`` of volume) and connection URIs (``uri``)


def _userinfo(url):
    match = _USERINFO.match(url) if isinstance(url, str) else None
    return match.group('userinfo') if match else None


def redact_url(url, keep_user=False):
    """``url`` with its userinfo replaced by ``***``: ``http://***@host/x``. With ``keep_user``
    (connection URIs, where the user name tells which account failed) only a password is:
    ``qemu+ssh://root:***@host/system``; a URI without a password is returned as it is."""
    info = _userinfo(url)
    if not info:
        return url
    if keep_user:
        if ':' not in info:
            return url
        replacement = '%s:%s' % (info.split(':', 1)[0], REDACTED)
    else:
        replacement = REDACTED
    return _USERINFO.sub(lambda m: '%s%s@' % (m.group('scheme'), replacement), url, count=1)


def url_secrets(url, keep_user=False):
    """The secret strings of ``url``'s userinfo, as written and percent-decoded (what
    :func:`redact_url` hides): add them to Ansible's ``no_log_values`` so that the module's
    invocation shows the URL with only these masked."""
    info = _userinfo(url)
    if not info:
        return set()
    parts = [info.split(':', 1)[1]] if ':' in info else ([] if keep_user else [info])
    if not keep_user:
        parts.append(info)
    secrets = set()
    for part in parts:
        secrets.update(value for value in (part, unquote(part)) if value)
    return secrets


def redact(text, url, keep_user=False):
    """``text`` (a message, an error from a library) with ``url`` and its userinfo's secrets
    redacted wherever they occur."""
    if not isinstance(text, str) or not url:
        return text
    text = text.replace(url, redact_url(url, keep_user))
    for secret in sorted(url_secrets(url, keep_user), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


# libvirt error code names (looked up lazily on the libvirt module, so this file never
# imports libvirt) grouped by what they mean to a user.
_NOT_FOUND_CODES = (
    'VIR_ERR_NO_DOMAIN',
    'VIR_ERR_NO_STORAGE_POOL',
    'VIR_ERR_NO_STORAGE_VOL',
    'VIR_ERR_NO_NETWORK',
    'VIR_ERR_NO_NODE_DEVICE',
    'VIR_ERR_NO_SECRET',
    'VIR_ERR_NO_INTERFACE',
    'VIR_ERR_NO_DOMAIN_SNAPSHOT',
    'VIR_ERR_NO_NWFILTER',
    'VIR_ERR_NO_NETWORK_PORT',
)
_AUTH_CODES = ('VIR_ERR_AUTH_FAILED', 'VIR_ERR_AUTH_CANCELLED', 'VIR_ERR_AUTH_UNAVAILABLE')
_DENIED_CODES = ('VIR_ERR_ACCESS_DENIED', 'VIR_ERR_OPERATION_DENIED')
_CONNECT_CODES = ('VIR_ERR_NO_CONNECT', 'VIR_ERR_SYSTEM_ERROR', 'VIR_ERR_RPC', 'VIR_ERR_INTERNAL_ERROR')
_INVALID_CODES = ('VIR_ERR_XML_ERROR', 'VIR_ERR_XML_DETAIL', 'VIR_ERR_CONFIG_UNSUPPORTED', 'VIR_ERR_INVALID_ARG')
_UNSUPPORTED_CODES = ('VIR_ERR_NO_SUPPORT', 'VIR_ERR_ARGUMENT_UNSUPPORTED')
_AGENT_CODES = (
    'VIR_ERR_AGENT_UNRESPONSIVE',
    'VIR_ERR_AGENT_UNSYNCED',
    'VIR_ERR_AGENT_COMMAND_TIMEOUT',
    'VIR_ERR_AGENT_COMMAND_FAILED',
)
# "internal error: client socket is closed" (every call after the first on a connection whose
# daemon went away) comes as VIR_ERR_INTERNAL_ERROR; the message text decides in all cases.
_GONE_CODES = ('VIR_ERR_NO_CONNECT', 'VIR_ERR_RPC', 'VIR_ERR_SYSTEM_ERROR', 'VIR_ERR_INTERNAL_ERROR')


def _codes(libvirt, names):
    return {getattr(libvirt, name) for name in names if hasattr(libvirt, name)}


def error_code(exc):
    get = getattr(exc, 'get_error_code', None)
    return get() if get else None


def is_code(libvirt, exc, *names):
    """True when ``exc`` is a libvirtError carrying one of the named codes."""
    return error_code(exc) in _codes(libvirt, names)


def is_not_found(libvirt, exc):
    return error_code(exc) in _codes(libvirt, _NOT_FOUND_CODES)


def is_connection_lost(libvirt, exc):
    """The daemon went away under an open connection (killed, restarted)."""
    code = error_code(exc)
    if code not in _codes(libvirt, _GONE_CODES):
        return False
    text = str(exc).lower()
    return any(
        word in text
        for word in (
            'end of file',
            'connection reset',
            'broken pipe',
            'not connected',
            'client socket is closed',
            'cannot recv data',
            'cannot write data',
            'connection closed',
            'no connection driver',
        )
    )


def translate(libvirt, exc, what=None, uri=None):
    """Map a libvirtError to a LibvirtModuleError subclass with a clear message.

    ``what`` describes the object or action ("guest 'web1'"), ``uri`` the connection.
    """
    code = error_code(exc)
    text = redact(str(exc).strip(), uri, keep_user=True)
    uri = redact_url(uri, keep_user=True)
    prefix = ('%s: ' % what) if what else ''
    if code in _codes(libvirt, _NOT_FOUND_CODES):
        return ObjectNotFound('%snot found (%s)' % (prefix, text), libvirt_code=code)
    if is_connection_lost(libvirt, exc):
        return ConnectionFailed(
            '%slost the connection to libvirt%s (%s). Was libvirtd (or virtqemud) stopped or restarted? '
            'Check the state and run the task again.' % (prefix, ' at %s' % uri if uri else '', text),
            libvirt_code=code,
        )
    if code in _codes(libvirt, _AUTH_CODES):
        return ConnectionFailed(
            '%sauthentication to %s failed: %s. Check username/password (SASL).' % (prefix, uri or 'libvirt', text),
            libvirt_code=code,
        )
    if code in _codes(libvirt, _DENIED_CODES) or 'permission denied' in text.lower():
        return ConnectionFailed(
            '%spermission denied on %s: %s. Run as a user allowed to manage libvirt '
            '(root or the libvirt group), or use become.' % (prefix, uri or 'libvirt', text),
            libvirt_code=code,
        )
    if code in _codes(libvirt, _AGENT_CODES):
        return OperationFailed('%sguest agent error: %s' % (prefix, text), libvirt_code=code)
    if code in _codes(libvirt, _INVALID_CODES):
        return OperationFailed('%slibvirt rejected the configuration: %s' % (prefix, text), libvirt_code=code)
    if code in _codes(libvirt, _UNSUPPORTED_CODES):
        return OperationFailed('%snot supported by this hypervisor/driver: %s' % (prefix, text), libvirt_code=code)
    return OperationFailed('%s%s' % (prefix, text), libvirt_code=code)


def connect_error(libvirt, exc, uri):
    """Message for a failed ``virConnectOpen*``. A password in ``uri`` is redacted (message and
    the ``uri`` result key)."""
    code = error_code(exc)
    text = redact(str(exc).strip(), uri, keep_user=True)
    uri = redact_url(uri, keep_user=True)
    if code in _codes(libvirt, _AUTH_CODES):
        return ConnectionFailed(
            'Authentication to %s failed: %s. Check username/password (SASL).' % (uri, text), libvirt_code=code, uri=uri
        )
    if code in _codes(libvirt, _DENIED_CODES) or 'permission denied' in text.lower():
        return ConnectionFailed(
            'Permission denied connecting to %s: %s. Run as root or a member of the '
            'libvirt group (become: true).' % (uri, text),
            libvirt_code=code,
            uri=uri,
        )
    return ConnectionFailed(
        'uri: cannot connect to libvirt at %s: %s. Is libvirtd (or virtqemud) running on the '
        'managed host, and is the URI right?' % (uri, text),
        libvirt_code=code,
        uri=uri,
    )
