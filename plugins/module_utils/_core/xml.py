# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""XML plumbing shared by every object kind: safe parsing, building and serialisation.

Every module imports this; the semantic comparison that decides ``changed`` is
``_core/compare.py`` and the checks of user-supplied XML are ``_core/user_xml.py``, so a module
(an ``*_info`` module, a typed spec) compiles only what it uses.
"""

from __future__ import annotations

import traceback

LXML_IMPORT_ERROR = None
try:
    from lxml import etree
except ImportError:  # pragma: no cover
    etree = None
    LXML_IMPORT_ERROR = traceback.format_exc()


class XMLSyntaxError(ValueError):
    pass


def _parser():
    # No network, no entity expansion: user-supplied XML must not reach out or blow up.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, remove_blank_text=True, remove_comments=True, huge_tree=False
    )


def parse(text):
    """Parse XML text (str or bytes) into an element; raises XMLSyntaxError."""
    if isinstance(text, str):
        text = text.encode('utf-8')
    try:
        root = etree.fromstring(text, _parser())
    except etree.XMLSyntaxError as exc:
        raise XMLSyntaxError(str(exc)) from None
    if root is None:
        raise XMLSyntaxError('empty document')
    return root


def tostring(element):
    return etree.tostring(element, pretty_print=True, encoding='unicode')


def sub(parent, tag, text=None, **attrs):
    """Append a child ``tag`` with string attributes (None values skipped) and optional text."""
    child = etree.SubElement(parent, tag)
    for key, value in attrs.items():
        if value is not None:
            child.set(key.rstrip('_').replace('__', '-'), _str(value))
    if text is not None:
        child.text = _str(text)
    return child


def element(tag, text=None, **attrs):
    node = etree.Element(tag)
    for key, value in attrs.items():
        if value is not None:
            node.set(key.rstrip('_').replace('__', '-'), _str(value))
    if text is not None:
        node.text = _str(text)
    return node


def _str(value):
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return str(value)


def findtext(node, path, default=None):
    found = node.find(path)
    if found is None or found.text is None:
        return default
    return found.text.strip()


def bad_xml_chars(value):
    """Characters of ``value`` that XML 1.0 cannot carry (NUL, most control characters)."""
    return sorted(
        {
            c
            for c in value
            if (ord(c) < 32 and c not in '\t\n\r') or 0xFFFE <= ord(c) <= 0xFFFF or 0xD800 <= ord(c) <= 0xDFFF
        }
    )


def check_xml_safe(option, value):
    """Raise ValueError naming ``option`` (path) when a string anywhere in ``value`` holds a
    character XML cannot carry. Dicts and lists are walked (``disks[0].serial``)."""
    if isinstance(value, str):
        bad = bad_xml_chars(value)
        if bad:
            raise ValueError('%s: contains characters XML cannot carry: %s' % (option, ' '.join(repr(c) for c in bad)))
    elif isinstance(value, dict):
        for key, item in value.items():
            check_xml_safe('%s.%s' % (option, key), item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_xml_safe('%s[%d]' % (option, index), item)
