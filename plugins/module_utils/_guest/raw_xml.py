# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A guest given as raw XML (the ``xml`` option of ``guest``): the XML checked, and compared and
merged with the current definition. The decision uses the last-applied record
(``_guest/applied.py``); without one the comparison is semantic (``_core/user_xml.py``).

The manager imports this file only for a task that gives ``xml``.
"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core import user_xml as U
from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.caps import canonical_machine
from ansible_collections.virtops.libvirt.plugins.module_utils._core.compare import differences
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import applied as A
from ansible_collections.virtops.libvirt.plugins.module_utils._guest import spec as D


def parse_user_xml(client, guest, text):
    """The ``xml`` option of ``guest`` parsed and checked: well-formed, no DTD, a ``<domain>``
    named ``guest``, valid against libvirt's schema. Its graphics passwords are hidden from output."""
    try:
        X.check_xml_safe('xml', text)
        root = X.parse(text)
    except (X.XMLSyntaxError, ValueError) as exc:
        raise InvalidParameter('xml', 'not well-formed XML: %s' % exc) from None
    U.reject_dtd('xml', root)
    # graphics passwords in the XML are secrets: masked wherever Ansible prints the task
    # (its invocation included), as a no_log option would be
    client.hide(node.get('passwd') for node in root.iter('graphics'))
    if root.tag != 'domain':
        raise InvalidParameter('xml', 'root element must be <domain>, got <%s>' % root.tag)
    names = [n.text for n in root.findall('name')]
    if names != [guest]:
        raise InvalidParameter(
            'xml',
            'the <name> in xml (%s) differs from name (%r)' % (', '.join(repr(n) for n in names) or 'none', guest),
        )
    U.validate_user_xml('xml', root, 'domain', 'domain')
    return root


def merge_user_xml(client, guest, current, desired, applied=None, secure=True):
    """(tree to define, changes) for the user's XML ``desired`` against the current definition.

    ``applied`` is the last-applied decision (True unchanged, False redefine, None compare
    semantically); ``secure``: ``current`` holds the graphics passwords.
    """
    uuid = X.findtext(current, 'uuid')
    want_uuid = X.findtext(desired, 'uuid')
    if want_uuid and want_uuid != uuid:
        raise InvalidParameter('xml', "the <uuid> in xml differs from the existing guest '%s' (%s)" % (guest, uuid))
    diffs = []
    if applied is not True:
        type_node = desired.find('os/type')
        machine = type_node.get('machine') if type_node is not None else None
        if machine:
            have_type = current.find('os/type')
            arch = type_node.get('arch') or (have_type.get('arch') if have_type is not None else None)
            machine = canonical_machine(client, arch, desired.get('type'), machine)
        want, have = U.normalise_domain(desired, current, machine=machine, secure=secure)
        # secrets are compared apart, so that no message shows them
        diffs = differences(A.redact(want), A.redact(have))
    if secure and A.secrets(desired) != A.secrets(current):
        diffs.append('graphics password')
    if diffs:
        message = 'definition differs at %s' % ', '.join(diffs[:5])
    elif applied is False:
        # what the semantic comparison cannot see (something the xml does not state)
        if A.read(current)['input'] == A.digest(desired):
            message = 'definition was changed outside since the xml was last applied'
        else:
            message = 'xml differs from the last applied xml'
    else:
        return current, []
    new_tree = copy.deepcopy(desired)
    if not want_uuid:
        node = X.element('uuid', uuid)
        new_tree.find('name').addnext(node)
    # keep generated MACs so the guest keeps its NIC identities
    have_nics = current.findall('devices/interface')
    for index, nic in enumerate(new_tree.findall('devices/interface')):
        if nic.find('mac') is None and index < len(have_nics) and have_nics[index].find('mac') is not None:
            nic.insert(0, copy.deepcopy(have_nics[index].find('mac')))
    return new_tree, [D.Change('xml', message)]
