# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``managed`` marker of guests the ``objects`` module creates or reconciles with a ``label``.

It lives in the guest's own ``<metadata>``, in the persistent definition::

    <metadata>
      <managed:managed xmlns:managed="https://virtops.dev/xmlns/libvirt/managed/1" label="fleet-a"/>
    </metadata>

``prune`` removes the guests marked with its label that the task does not name; a guest without
the marker, or with another label, is never touched. A guest given as raw ``xml`` gets the marker
inside that XML (:func:`stamp_xml`), so that its last-applied record (``_guest/applied.py``)
covers it; a guest given by typed options gets it by one ``setMetadata`` (:func:`set_label`).
"""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X

NAMESPACE = 'https://virtops.dev/xmlns/libvirt/managed/1'
PREFIX = 'managed'
NAME = 'managed'
TAG = '{%s}%s' % (NAMESPACE, NAME)


def element_text(label):
    """The marker as ``setMetadata`` takes it (libvirt puts it in NAMESPACE under PREFIX)."""
    return X.etree.tostring(X.element(NAME, label=label), encoding='unicode')


def label_of(client, dom):
    """The label of ``dom``'s marker in its persistent definition; None without one (or for a
    guest without persistent definition)."""
    lv = client.libvirt
    try:
        text = dom.metadata(lv.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE, lv.VIR_DOMAIN_AFFECT_CONFIG)
    except lv.libvirtError as exc:
        if client.is_error(exc, 'VIR_ERR_NO_DOMAIN_METADATA', 'VIR_ERR_OPERATION_INVALID', 'VIR_ERR_NO_DOMAIN'):
            return None  # no marker; a transient guest; removed meanwhile
        raise client.error(exc, "guest '%s' metadata" % dom.name()) from None
    try:
        return X.parse(text).get('label')
    except X.XMLSyntaxError:
        return None


def label_in(root):
    """The label of the marker in a domain XML tree, or None."""
    node = root.find('metadata/' + TAG)
    return node.get('label') if node is not None else None


def stamp_xml(text, label):
    """Domain XML ``text`` with the marker for ``label`` in its ``<metadata>`` (replacing a
    marker it has); returned unchanged when it is no well-formed domain XML (the guest manager
    then refuses it, naming the option)."""
    try:
        root = X.parse(text)
    except (X.XMLSyntaxError, ValueError):
        return text
    if root.tag != 'domain':
        return text
    metadata = root.find('metadata')
    if metadata is None:
        metadata = X.etree.Element('metadata')
        anchor = None
        for child in root:
            if isinstance(child.tag, str) and child.tag in ('name', 'uuid', 'genid', 'title', 'description'):
                anchor = child
        if anchor is None:
            root.insert(0, metadata)
        else:
            anchor.addnext(metadata)
    for old in metadata.findall(TAG):
        metadata.remove(old)
    node = X.etree.SubElement(metadata, TAG, nsmap={PREFIX: NAMESPACE})
    node.set('label', label)
    return X.tostring(root)


def set_label(client, name, label):
    """The step that marks guest ``name`` with ``label`` (persistent definition)."""
    lv = client.libvirt
    dom = client.lookup_again('guest', name)
    client.call(
        dom.setMetadata,
        lv.VIR_DOMAIN_METADATA_ELEMENT,
        element_text(label),
        PREFIX,
        NAMESPACE,
        lv.VIR_DOMAIN_AFFECT_CONFIG,
        what="guest '%s' metadata" % name,
    )


def keep(client, name, label):
    """Undo of :func:`set_label` inside a failing entry: nothing to take back by itself (the
    guest's define before it is undone, which removes the marker with it)."""
