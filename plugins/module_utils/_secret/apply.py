# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The changes the ``secret`` module makes: the actions of the steps ``SecretManager`` plans
(define, redefine, set the value, remove) and the undo of a secret this task defined.

Imported by the shared runner only when there is something to do. The value passes through here
as bytes to ``virSecretSetValue`` and into the keyed digest of its record (``value.Records``); it
is never put into a message, an error or a result.
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core.apply import Replan
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import LibvirtModuleError, OperationFailed
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.read import find_secret
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.spec import parse_secret
from ansible_collections.virtops.libvirt.plugins.module_utils._secret.value import Records


def _secret(client, uuid):
    secret = find_secret(client, uuid=uuid)
    if secret is None:
        raise OperationFailed(
            "secret '%s' disappeared while this task changed it (removed by a concurrent run?)" % uuid
        )
    return secret


def define_new(client, xml, uuid, usage, what):
    """Define the secret this task creates. When another run defined it (the UUID, or a secret of
    the same usage) a moment ago, nothing was changed here: :class:`Replan` converges onto it."""
    if find_secret(client, uuid=uuid) is not None:
        raise Replan('%s was defined by another run meanwhile' % what)
    try:
        client.call('secretDefineXML', xml, 0, what=what)
    except LibvirtModuleError:
        if usage[0] is not None and find_secret(client, None, *usage) is not None:
            raise Replan('%s was defined by another run meanwhile' % what) from None
        raise


def undefine_new(client, uuid, records_key):
    """Undo of :func:`define_new` (and of the value set after it): already gone counts as undone."""
    secret = find_secret(client, uuid=uuid)
    if secret is not None:
        client.call(secret.undefine, what="secret '%s'" % uuid)
    Records(records_key).forget(uuid)


def redefine(client, xml, uuid, what):
    """Redefine an existing secret (description, private, ephemeral); its value stays."""
    current = parse_secret(client.call(_secret(client, uuid).XMLDesc, 0, what=what))
    if current['uuid'] != uuid:  # (cannot happen: looked up by this UUID)
        raise Replan('%s changed meanwhile' % what)
    client.call('secretDefineXML', xml, 0, what=what)


def set_value(client, uuid, value, private, records_key, what):
    """Set the value; for a private secret, record its keyed digest (see ``value.Records``). A
    record that cannot be written is a warning: the value is set, a later run sets it again."""
    secret = _secret(client, uuid)
    client.call(secret.setValue, value, 0, what=what + ' value')
    if private:
        try:
            Records(records_key).save(uuid, value)
        except OperationFailed as exc:
            client.warn('%s: %s; the next run cannot tell that the value is unchanged' % (what, exc.msg))


def record_value(client, uuid, value, records_key, what):
    """A secret made private by this task whose value was compared equal just before: record it,
    so that the next run knows the value it can no longer read (changes nothing in libvirt)."""
    try:
        Records(records_key).save(uuid, value)
    except OperationFailed as exc:
        client.warn('%s: %s; the next run sets the value again' % (what, exc.msg))
    return False  # nothing to report


def remove(client, uuid, records_key, what):
    """Undefine the secret and forget its value record. Gone already (a concurrent run): that run
    reports the removal, this one nothing."""
    secret = find_secret(client, uuid=uuid)
    if secret is None:
        Records(records_key).forget(uuid)
        return False
    made = client.call_unless_done(
        secret.undefine, done=lambda exc: client.is_error(exc, 'VIR_ERR_NO_SECRET'), what=what
    )
    Records(records_key).forget(uuid)
    return None if made else False
