# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""User-supplied XML (the ``xml`` option of ``guest``, ``network``, ``storage_pool``): checked
the way libvirt's ``define`` checks it, and what libvirt makes of it.

No DTD or entities, libvirt's RelaxNG schema (:func:`validate_user_xml`), libvirt's own parser
through the in-process test driver (:func:`parsed_by_libvirt`, :func:`check_against_libvirt`,
:func:`stated_part`) and, for guests, what libvirt adds or rewrites in a domain by itself
(:func:`normalise_domain`). Only a task that passes XML imports this (function-level imports in
the managers): a typed task never compiles it.
"""

from __future__ import annotations

import copy

from ansible_collections.virtops.libvirt.plugins.module_utils._core.compare import group, norm_attr
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter
from ansible_collections.virtops.libvirt.plugins.module_utils._core.xml import etree, parse

SCHEMA_DIR = '/usr/share/libvirt/schemas'
_SCHEMAS = {}


def has_entities_or_dtd(root):
    """True when user XML declares a DTD or references entities (never needed by libvirt)."""
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        return True
    return any(True for _node in root.iter(etree.Entity))


def schema_errors(root, kind):
    """Errors of ``root`` against libvirt's RelaxNG schema ``kind`` (domain, storagepool, ...).

    None when the schema is not installed on the managed host (libvirt then validates itself).
    """
    import os

    path = os.path.join(SCHEMA_DIR, '%s.rng' % kind)
    if kind not in _SCHEMAS:
        try:
            _SCHEMAS[kind] = etree.RelaxNG(etree.parse(path))
        except (etree.RelaxNGParseError, etree.XMLSyntaxError, OSError):
            _SCHEMAS[kind] = None
    schema = _SCHEMAS[kind]
    if schema is None:
        return None
    if schema.validate(root):
        return []
    return ['line %s: %s' % (error.line, error.message) for error in schema.error_log] or ['invalid']


def reject_dtd(option, root):
    """Raise InvalidParameter(option) for user XML with a DOCTYPE or entity references: libvirt
    never needs them, and they are the way to external files (XXE) and entity bombs."""
    if has_entities_or_dtd(root):
        raise InvalidParameter(option, 'a DOCTYPE (DTD, entity declarations) or entity references are not accepted')


def validate_user_xml(option, root, kind, what):
    """Check user XML: no DTD or entities, then libvirt's RelaxNG schema ``kind``. Raise
    InvalidParameter(option) naming the first errors; return False when the schema is not
    installed on the managed host (libvirt then validates itself), True when valid."""
    reject_dtd(option, root)
    errors = schema_errors(root, kind)
    if errors is None:
        return False
    if errors:
        raise InvalidParameter(
            option, "does not validate against libvirt's %s schema: %s" % (what, '; '.join(errors[:3]))
        )
    return True


# ---------------------------------------------------------------------------------------------
# What libvirt's own parser makes of a definition


def parsed_by_libvirt(libvirt, kind, text):
    """``text`` (a ``pool`` or ``network`` definition) as libvirt's own parser reads it, through the
    in-process test driver (``test:///default``: no daemon, nothing leaves this process): defaults
    filled in, values spelled libvirt's way, what the parser ignores dropped. Returns
    ``(element, None)``, ``(None, message)`` when libvirt rejects the definition (what
    ``virsh pool-define`` / ``net-define`` would say), or ``(None, None)`` when this cannot be told
    here (no test driver in this libvirt, a definition it cannot take in)."""
    define, listing, desc = {
        'pool': ('storagePoolDefineXML', 'listAllStoragePools', 0),
        'network': ('networkDefineXML', 'listAllNetworks', None),
    }[kind]
    try:
        conn = libvirt.open('test:///default')
    except libvirt.libvirtError:
        return None, None
    try:
        # the driver's sample objects: no name, bridge or source clash with the definition
        for obj in getattr(conn, listing)(0):
            if obj.isActive():
                obj.destroy()
            obj.undefine()
        try:
            obj = getattr(conn, define)(text) if desc is None else getattr(conn, define)(text, desc)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            invalid = [getattr(libvirt, n, None) for n in _REJECTED_CODES]
            if code in invalid:
                return None, str(exc).strip()
            return None, None
        return parse(obj.XMLDesc(0)), None
    except libvirt.libvirtError:
        return None, None
    finally:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass  # in-process driver: nothing to release


# the parser's own refusals; any other error is the test driver's and leaves the verdict to the real define
# (the in-process driver has no daemon or connection to fail: its internal errors are the parser's too,
# "range ... is not entirely within network ...")
_REJECTED_CODES = ('VIR_ERR_XML_ERROR', 'VIR_ERR_XML_DETAIL', 'VIR_ERR_CONFIG_UNSUPPORTED', 'VIR_ERR_INTERNAL_ERROR')


def check_against_libvirt(option, stated, normalized, kind, what):
    """Judge user XML ``stated`` that libvirt's parser accepted (``normalized`` is its reading) the
    way ``virsh define`` would, not stricter, except for what libvirt would silently ignore.

    libvirt's RelaxNG schema is stricter than its parser, so the schema is asked about ``stated``
    completed with what the parser fills in by itself (a logical pool's target). When it still
    objects and elements of ``stated`` are missing from libvirt's reading (unknown elements, a
    second ``<name>``: libvirt ignores them) raise InvalidParameter(option) naming them; any other
    objection is libvirt's schema being stricter than libvirt: returned as a warning text (else
    None)."""
    completed, dropped = _completed(normalized, stated, '/' + stated.tag)
    errors = schema_errors(completed, kind)
    if not errors:
        return None
    if dropped:
        raise InvalidParameter(
            option,
            'libvirt would ignore %s: not part of its %s format (%s)' % (', '.join(dropped[:5]), what, errors[0]),
        )
    return "%s: libvirt accepts this %s definition, but it does not validate against libvirt's schema (%s)" % (
        option,
        what,
        '; '.join(errors[:3]),
    )


def _completed(normalized, stated, path):
    """(copy of ``stated`` with the elements only ``normalized`` has added, paths of the elements of
    ``stated`` that ``normalized`` lacks)."""
    out = etree.Element(stated.tag, dict(stated.attrib))
    out.text = stated.text
    dropped = []
    have = group(normalized) if normalized is not None else {}
    seen = {}
    for child in stated:
        if not isinstance(child.tag, str):
            continue
        index = seen.get(child.tag, 0)
        seen[child.tag] = index + 1
        peers = have.get(child.tag, [])
        peer = peers[index] if index < len(peers) else None
        cpath = '%s/%s' % (path, child.tag)
        if peer is None:
            dropped.append('<%s>' % cpath.lstrip('/'))
        sub, lost = _completed(peer, child, cpath)
        out.append(sub)
        dropped.extend(lost if peer is not None else [])
    for tag, peers in have.items():
        for extra in peers[seen.get(tag, 0) :]:
            out.append(copy.deepcopy(extra))
    return out, dropped


def stated_part(normalized, stated):
    """The part of ``normalized`` (libvirt's reading of ``stated``, see :func:`parsed_by_libvirt`)
    that ``stated`` gives: elements and attributes libvirt added are dropped, values keep libvirt's
    spelling. Children are matched by tag and position among their same-tag siblings. The result
    is what a subset comparison with the current definition should want."""
    out = etree.Element(normalized.tag)
    for name, value in normalized.attrib.items():
        if name in stated.attrib:
            out.set(name, value)
    out.text = normalized.text if (stated.text or '').strip() else None
    have = group(stated)
    seen = {}
    for child in normalized:
        if not isinstance(child.tag, str):
            continue
        index = seen.get(child.tag, 0)
        seen[child.tag] = index + 1
        peers = have.get(child.tag, [])
        if index < len(peers):
            out.append(stated_part(child, peers[index]))
    return out


def normalise_domain(want, have, machine=None, secure=True):
    """Copies of a user's domain XML ``want`` and libvirt's definition ``have``, with what libvirt
    adds or rewrites by itself made equal, for :func:`differences`.

    ``machine``: the canonical name of want's machine (an alias such as ``pc`` or ``q35`` is
    stored expanded); ``secure``: whether ``have`` was read with VIR_DOMAIN_XML_SECURE (without
    it libvirt hides graphics passwords, which then cannot be compared). Covered: the serial
    device paired with a console (and the console paired with a serial), the implicit PS/2
    mouse and keyboard, graphics auto ports (``port='-1'``), a unix channel's generated socket
    path, generated interface target names, non-user device aliases, dynamic security labels, the
    ``none`` security model, and the runtime details of a running guest's XML (see
    :func:`_drop_runtime`).
    """
    want = copy.deepcopy(want)
    have = copy.deepcopy(have)
    if want.attrib.pop('id', None) is not None:
        _drop_runtime(want, have)
    type_node = want.find('os/type')
    if machine and type_node is not None and type_node.get('machine'):
        type_node.set('machine', machine)
    for label in want.findall('seclabel'):
        if label.get('model') == 'none':
            label.set('type', 'none')  # the 'none' security driver labels nothing
        if label.get('type', 'dynamic') == 'dynamic':
            for child in label.findall('label') + label.findall('imagelabel'):
                label.remove(child)
    wdev = want.find('devices')
    hdev = have.find('devices')
    if wdev is None or hdev is None:
        return want, have
    for alias in wdev.iter('alias'):
        if not (alias.get('name') or '').startswith('ua-'):
            alias.getparent().remove(alias)
    for target in wdev.findall('interface/target'):
        if (target.get('dev') or '').startswith(('vnet', 'macvtap', 'macvlan')):
            target.getparent().remove(target)
    for source in wdev.findall('channel/source'):
        if source.getparent().get('type') == 'unix' and not source.get('path'):
            source.getparent().remove(source)
    for graphics in wdev.findall('graphics'):
        auto = norm_attr(graphics.get('autoport', '')) == 'yes'
        for name in ('port', 'tlsPort', 'websocket'):
            if graphics.get(name) == '-1' or (auto and name != 'websocket' and graphics.get(name)):
                del graphics.attrib[name]
                auto = auto or name == 'port'
        if auto:
            graphics.set('autoport', 'yes')
        if not secure:
            graphics.attrib.pop('passwd', None)
    for graphics in hdev.findall('graphics'):
        auto = norm_attr(graphics.get('autoport', '')) == 'yes'
        for name in ('port', 'tlsPort', 'websocket'):
            if graphics.get(name) == '-1' or (auto and name != 'websocket' and graphics.get(name)):
                del graphics.attrib[name]
    _drop_paired(wdev, hdev, 'serial', 'console')
    _drop_paired(wdev, hdev, 'console', 'serial')
    # the PS/2 mouse and keyboard libvirt adds on x86: keep as many as want states
    for kind in ('mouse', 'keyboard'):
        wanted = len([n for n in wdev.findall('input') if n.get('type') == kind and n.get('bus', 'ps2') == 'ps2'])
        implicit = [n for n in hdev.findall('input') if n.get('type') == kind and n.get('bus') == 'ps2']
        for node in implicit[wanted:]:
            hdev.remove(node)
    # libvirt lists the PS/2 inputs after the others: compare inputs in want's order
    inputs = hdev.findall('input')
    if inputs:
        ordered = []
        for node in wdev.findall('input'):
            for cand in inputs:
                if (
                    cand not in ordered
                    and cand.get('type') == node.get('type')
                    and node.get('bus') in (None, cand.get('bus'))
                ):
                    ordered.append(cand)
                    break
        anchor = inputs[0].getprevious()
        for node in inputs:
            hdev.remove(node)
        for node in reversed(ordered + [n for n in inputs if n not in ordered]):
            if anchor is None:
                hdev.insert(0, node)
            else:
                anchor.addnext(node)
    return want, have


def _drop_runtime(want, have):
    """``want`` is the XML of a running guest (``virsh dumpxml`` without --inactive, it has an
    ``id``): drop what only a running guest shows where the definition does not have it - pty
    paths, channel states, the resolved graphics listen address, the expanded CPU, the
    resource partition, the security labels."""
    for tag in ('resource', 'seclabel'):
        if have.find(tag) is None:
            for node in want.findall(tag):
                want.remove(node)
    cpu, have_cpu = want.find('cpu'), have.find('cpu')
    if cpu is not None and have_cpu is not None:
        if have_cpu.get('check') is None or have_cpu.find('feature') is None:
            cpu.attrib.pop('check', None)
            for node in cpu.findall('feature'):
                cpu.remove(node)
    devices = want.find('devices')
    if devices is None:
        return
    for node in devices:
        if node.tag in ('serial', 'console', 'channel', 'parallel') and node.get('type') == 'pty':
            node.attrib.pop('tty', None)
            for source in node.findall('source'):
                node.remove(source)
        if node.tag == 'channel':
            for target in node.findall('target'):
                target.attrib.pop('state', None)
            for source in node.findall('source'):
                # the socket path libvirt generates at start
                if (source.get('path') or '').startswith(
                    ('/run/libvirt/qemu/channel/', '/var/lib/libvirt/qemu/channel/')
                ):
                    node.remove(source)
    have_listens = {g.get('type'): g for g in have.findall('devices/graphics') if g.get('listen') is None}
    for graphics in devices.findall('graphics'):
        if graphics.get('type') in have_listens and graphics.get('listen'):
            del graphics.attrib['listen']  # the host's default, resolved at start
            for listen in graphics.findall('listen'):
                listen.attrib.pop('address', None)


def _drop_paired(wdev, hdev, tag, pair):
    """Remove from ``hdev`` the ``tag`` devices libvirt added for a ``pair`` device (a serial for
    a serial console, a console for the first serial) when ``wdev`` states no ``tag``."""
    if wdev.find(tag) is not None or wdev.find(pair) is None:
        return
    ports = set()
    for node in hdev.findall(pair):
        target = node.find('target')
        if tag == 'serial' and target is not None and target.get('type', 'serial') != 'serial':
            continue
        ports.add(target.get('port', '0') if target is not None else '0')
    for node in hdev.findall(tag):
        target = node.find('target')
        if tag == 'console' and target is not None and target.get('type', 'serial') != 'serial':
            continue
        if (target.get('port', '0') if target is not None else '0') in ports:
            hdev.remove(node)
