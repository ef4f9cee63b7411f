# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Virtual networks: typed spec <-> network XML, pure functions (no libvirt, no current state).

Spec side: :func:`validate_spec` checks the typed options on their own, :func:`apply_spec` merges
them into an existing definition (options not given are left as they are) and
:func:`build_network` is the same merge onto an empty definition. Subnet-relative checks (DHCP
ranges and hosts inside the subnet) run after the merge, against the effective address.

Comparison side: :func:`same_definition` compares two definitions after :func:`canonical` removed
what libvirt fills in by itself (stp/delay defaults, the NAT port range, ``connections`` counters,
netmask vs prefix, DHCP entry order, MAC case); :func:`dhcp_update_plan` tells which live DHCP
updates turn one definition into another.

The manager (``_network/manager.py``) reads and plans with these; ``_network/apply.py`` makes the
changes.
"""

from __future__ import annotations

import copy
import ipaddress
import re

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.compare import differences
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import InvalidParameter

FORWARD_MODES = ('nat', 'route', 'open', 'bridge', 'isolated')
# Modes in which libvirt owns the bridge and runs the host side (address, dnsmasq).
ROUTED_MODES = ('nat', 'route', 'open')
TYPED_OPTIONS = ('forward', 'bridge', 'ip', 'netmask', 'prefix', 'dhcp', 'mtu', 'domain', 'ipv6')
STATES = ('present', 'active', 'inactive', 'absent')

# Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no '/', ':' or whitespace.
_BRIDGE_RE = r'^[A-Za-z0-9_.-]{1,15}$'
_DNS_RE = (
    r'^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
    r'(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$'
)
_MAC_RE = r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$'
# libvirt's element order, used to place new elements where libvirt itself would write them.
_ORDER = ('name', 'uuid', 'metadata', 'forward', 'bridge', 'mtu', 'mac', 'domain', 'dns', 'ip', 'route')


# ---------------------------------------------------------------------------------------------
# Validation of the typed options (no libvirt, no current state)


def validate_bridge_name(option, value):
    if value in ('.', '..') or not re.match(_BRIDGE_RE, value or ''):
        if value and len(value) > 15:
            raise InvalidParameter(
                option, '%r is %d characters long; Linux interface names are at most 15' % (value, len(value))
            )
        raise InvalidParameter(
            option, '%r is not a valid interface name (letters, digits, _ . - only, at most 15 characters)' % (value,)
        )
    return value


def _ipv4(option, value):
    try:
        addr = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise InvalidParameter(option, '%r is not an IP address' % (value,)) from None
    if addr.version != 4:
        raise InvalidParameter(option, '%s is an IPv6 address; give it as ipv6.address (ip is the IPv4 address)' % addr)
    return addr


def _interface(spec):
    """The host address with its subnet from ip + prefix/netmask, as an IPv4Interface."""
    raw = str(spec['ip']).strip()
    address, sep, length = raw.partition('/')
    addr = _ipv4('ip', address)
    netmask, prefix = spec.get('netmask'), spec.get('prefix')
    if sep:
        if not length.isdigit():
            raise InvalidParameter('ip', '%r: the part after / must be a prefix length' % raw)
        if netmask is not None or prefix is not None:
            given = _mask_prefix(netmask) if netmask is not None else prefix
            if given != int(length):
                raise InvalidParameter(
                    'ip',
                    '%r states prefix /%s but %s says %s'
                    % (
                        raw,
                        length,
                        'netmask' if netmask is not None else 'prefix',
                        netmask if netmask is not None else prefix,
                    ),
                )
        prefix_len = int(length)
        option = 'ip'
    elif prefix is not None:
        prefix_len, option = prefix, 'prefix'
    elif netmask is not None:
        prefix_len, option = _mask_prefix(netmask), 'netmask'
    else:
        raise InvalidParameter('ip', 'needs a prefix length: write it as %s/24, or give prefix or netmask' % raw)
    if not 1 <= prefix_len <= 30:
        raise InvalidParameter(option, 'prefix length must be between 1 and 30, got %s' % prefix_len)
    iface = ipaddress.IPv4Interface('%s/%d' % (addr, prefix_len))
    if addr in (iface.network.network_address, iface.network.broadcast_address):
        raise InvalidParameter(
            'ip',
            '%s is the %s address of %s; give the host (gateway) address, for example %s'
            % (
                addr,
                'network' if addr == iface.network.network_address else 'broadcast',
                iface.network,
                next(iface.network.hosts()),
            ),
        )
    return iface


def _mask_prefix(netmask):
    try:
        net = ipaddress.IPv4Network('0.0.0.0/%s' % str(netmask).strip())
    except ValueError:
        raise InvalidParameter(
            'netmask', '%r is not a valid IPv4 netmask (example: 255.255.255.0)' % (netmask,)
        ) from None
    if '.' not in str(netmask):
        raise InvalidParameter('netmask', '%r is not a dotted netmask; use prefix for a length' % (netmask,))
    return net.prefixlen


def _mac(option, value):
    mac = str(value).strip().lower().replace('-', ':')
    if not re.match(_MAC_RE, mac):
        raise InvalidParameter(option, '%r is not a MAC address (example: 52:54:00:12:34:56)' % (value,))
    if int(mac[:2], 16) & 1:
        raise InvalidParameter(option, '%s is a multicast MAC address' % mac)
    return mac


def validate_spec(spec):
    """Check the typed options on their own; return a normalized copy.

    Raises InvalidParameter naming the option. Checks that need the effective subnet (when the
    address comes from the existing network) run in :func:`apply_spec`.
    """
    spec = copy.deepcopy(spec)
    check_object_name('name', spec.get('name'))
    forward = spec.get('forward')
    if forward is not None and forward not in FORWARD_MODES:
        raise InvalidParameter(
            'forward', '%r is not a forward mode; use one of %s' % (forward, ', '.join(FORWARD_MODES))
        )
    if spec.get('bridge') is not None:
        validate_bridge_name('bridge', spec['bridge'])
    if spec.get('netmask') is not None and spec.get('prefix') is not None:
        raise InvalidParameter('netmask', 'give either netmask or prefix, not both')
    for option in ('netmask', 'prefix'):
        if spec.get(option) is not None and spec.get('ip') is None:
            raise InvalidParameter(option, 'needs ip')
    if spec.get('ip') is not None:
        spec['_iface'] = _interface(spec)
        spec['_mask_form'] = 'netmask' if spec.get('netmask') is not None else 'prefix'
    mtu = spec.get('mtu')
    if mtu is not None and not 68 <= mtu <= 65535:
        raise InvalidParameter('mtu', 'must be between 68 and 65535, got %s' % mtu)
    domain = spec.get('domain')
    if domain and not re.match(_DNS_RE, domain):
        raise InvalidParameter('domain', '%r is not a valid DNS domain name' % (domain,))
    if forward == 'bridge':
        if not spec.get('bridge'):
            raise InvalidParameter(
                'bridge', 'required with forward: bridge (the existing host bridge to attach guests to)'
            )
        for option in ('ip', 'dhcp', 'mtu', 'ipv6'):
            if spec.get(option) is not None:
                raise InvalidParameter(
                    option, 'not supported with forward: bridge (the host bridge is configured outside libvirt)'
                )
        if domain:
            raise InvalidParameter('domain', 'not supported with forward: bridge')
    dhcp = spec.get('dhcp')
    if dhcp is not None:
        _validate_dhcp_entries(dhcp)
    if spec.get('ipv6') is not None:
        spec['ipv6'] = _validate_ipv6(spec['ipv6'])
    return spec


def _validate_ipv6(v6):
    """Check the ``ipv6`` option: ``address`` (with ``/prefix`` or ``prefix``; '' removes IPv6) and
    ``dhcp_ranges`` (DHCPv6, inside the subnet). Adds ``_iface`` (an IPv6Interface, or None)."""
    v6 = dict(v6)
    raw = (v6.get('address') or '').strip()
    prefix = v6.get('prefix')
    if not raw:
        if prefix is not None or v6.get('dhcp_ranges'):
            raise InvalidParameter(
                'ipv6.address', "is required with ipv6.prefix and ipv6.dhcp_ranges ('' removes IPv6)"
            )
        v6['_iface'] = None
        return v6
    address, sep, length = raw.partition('/')
    if sep:
        if not length.isdigit():
            raise InvalidParameter('ipv6.address', '%r: the part after / must be a prefix length' % raw)
        if prefix is not None and prefix != int(length):
            raise InvalidParameter(
                'ipv6.address', '%r states prefix /%s but ipv6.prefix says %s' % (raw, length, prefix)
            )
        prefix = int(length)
    elif prefix is None:
        raise InvalidParameter('ipv6.address', 'needs a prefix length: write it as %s/64, or give ipv6.prefix' % raw)
    if not 1 <= prefix <= 128:
        raise InvalidParameter('ipv6.prefix', 'must be between 1 and 128, got %s' % prefix)
    try:
        addr = ipaddress.IPv6Address(address)
    except ValueError:
        raise InvalidParameter('ipv6.address', '%r is not an IPv6 address' % (address,)) from None
    if addr.is_multicast or addr.is_link_local or addr.is_loopback or addr.is_unspecified or addr.ipv4_mapped:
        raise InvalidParameter(
            'ipv6.address',
            '%s cannot be the address of a network (multicast, link-local, loopback or unspecified)' % addr,
        )
    iface = ipaddress.IPv6Interface('%s/%d' % (addr, prefix))
    v6['_iface'] = iface
    ranges = []
    for index, entry in enumerate(v6.get('dhcp_ranges') or []):
        option = 'ipv6.dhcp_ranges[%d]' % index
        bounds = []
        for key in ('start', 'end'):
            try:
                bounds.append(ipaddress.IPv6Address(str(entry.get(key) or '').strip()))
            except ValueError:
                raise InvalidParameter(
                    '%s.%s' % (option, key), '%r is not an IPv6 address' % (entry.get(key),)
                ) from None
        start, end = bounds
        if start > end:
            raise InvalidParameter(option, 'start %s is after end %s' % (start, end))
        if start not in iface.network or end not in iface.network:
            raise InvalidParameter(option, '%s-%s is not inside %s' % (start, end, iface.network))
        if start <= addr <= end:
            raise InvalidParameter(option, '%s-%s holds the address of the host side, %s' % (start, end, addr))
        for other_index, (ostart, oend) in enumerate(ranges):
            if start <= oend and ostart <= end:
                raise InvalidParameter(option, '%s-%s overlaps ipv6.dhcp_ranges[%d]' % (start, end, other_index))
        ranges.append((start, end))
    v6['dhcp_ranges'] = None if v6.get('dhcp_ranges') is None else [(str(a), str(b)) for a, b in ranges]
    return v6


def _validate_dhcp_entries(dhcp):
    """Format checks of DHCP ranges and hosts; subnet checks come later (see _check_dhcp_subnet)."""
    ranges = []
    for index, entry in enumerate(dhcp.get('ranges') or []):
        option = 'dhcp.ranges[%d]' % index
        start = _ipv4(option + '.start', entry.get('start'))
        end = _ipv4(option + '.end', entry.get('end'))
        if start > end:
            raise InvalidParameter(option, 'start %s is after end %s' % (start, end))
        for other_index, (ostart, oend) in enumerate(ranges):
            if start <= oend and ostart <= end:
                raise InvalidParameter(option, '%s-%s overlaps dhcp.ranges[%d]' % (start, end, other_index))
        ranges.append((start, end))
        entry['start'], entry['end'] = str(start), str(end)
    seen = {}
    for index, host in enumerate(dhcp.get('hosts') or []):
        option = 'dhcp.hosts[%d]' % index
        host['ip'] = str(_ipv4(option + '.ip', host.get('ip')))
        if host.get('mac'):
            host['mac'] = _mac(option + '.mac', host['mac'])
        else:
            host['mac'] = None
        if host.get('name'):
            if not re.match(_DNS_RE, host['name']):
                raise InvalidParameter(option + '.name', '%r is not a valid host name' % (host['name'],))
        else:
            host['name'] = None
        if not host['mac'] and not host['name']:
            raise InvalidParameter(option, 'give mac or name (or both) with ip')
        for key in ('mac', 'ip', 'name'):
            value = host[key]
            if value is None:
                continue
            if (key, value.lower()) in seen:
                raise InvalidParameter(
                    '%s.%s' % (option, key),
                    '%s is already used by dhcp.hosts[%d]' % (value, seen[(key, value.lower())]),
                )
            seen[(key, value.lower())] = index


# ---------------------------------------------------------------------------------------------
# Reading a definition


def forward_mode(root):
    """``nat``/``route``/``open``/``bridge``/... or ``isolated`` when there is no <forward>."""
    node = root.find('forward')
    if node is None:
        return 'isolated'
    return node.get('mode') or 'nat'


def ipv4_nodes(root):
    out = []
    for node in root.findall('ip'):
        family = node.get('family')
        address = node.get('address') or ''
        if family in (None, 'ipv4') and ':' not in address:
            out.append(node)
    return out


def ipv6_nodes(root):
    return [node for node in root.findall('ip') if node not in ipv4_nodes(root)]


def ipv6_interface(node):
    """IPv6Interface of an <ip family='ipv6'> element (prefix 64 when not stated, as libvirt), or None."""
    if node is None or not node.get('address'):
        return None
    try:
        return ipaddress.IPv6Interface('%s/%s' % (node.get('address'), node.get('prefix') or 64))
    except ValueError:
        return None


def ip_interface(node):
    """IPv4Interface of an <ip> element, or None when it has no usable address."""
    if node is None or not node.get('address'):
        return None
    try:
        if node.get('prefix'):
            return ipaddress.IPv4Interface('%s/%s' % (node.get('address'), node.get('prefix')))
        if node.get('netmask'):
            return ipaddress.IPv4Interface('%s/%s' % (node.get('address'), node.get('netmask')))
        return ipaddress.IPv4Interface(node.get('address'))
    except ValueError:
        return None


def summarize(root):
    """Plain facts of a network definition (used in the module result)."""
    ip_node = next(iter(ipv4_nodes(root)), None)
    iface = ip_interface(ip_node)
    bridge = root.find('bridge')
    dhcp = ip_node.find('dhcp') if ip_node is not None else None
    return dict(
        forward=forward_mode(root),
        bridge=bridge.get('name') if bridge is not None else None,
        ip=str(iface.ip) if iface else None,
        prefix=iface.network.prefixlen if iface else None,
        netmask=str(iface.netmask) if iface else None,
        dhcp=dict(
            ranges=[dict(start=r.get('start'), end=r.get('end')) for r in dhcp.findall('range')],
            hosts=[{k: h.get(k) for k in ('mac', 'ip', 'name') if h.get(k)} for h in dhcp.findall('host')],
        )
        if dhcp is not None
        else None,
        mtu=int(root.find('mtu').get('size')) if root.find('mtu') is not None else None,
        domain=root.find('domain').get('name') if root.find('domain') is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# Spec -> XML


def _place(root, node):
    """Insert ``node`` among root's children at libvirt's usual position."""
    rank = _ORDER.index(node.tag) if node.tag in _ORDER else len(_ORDER)
    for child in root:
        if isinstance(child.tag, str) and child.tag in _ORDER and _ORDER.index(child.tag) > rank:
            child.addprevious(node)
            return node
    root.append(node)
    return node


def _remove(node):
    if node is not None:
        node.getparent().remove(node)


def build_network(spec):
    """Definition of a new network from validated typed options (forward defaults to isolated)."""
    root = X.element('network')
    X.sub(root, 'name', spec['name'])
    apply_spec(root, spec, new=True)
    return root


def apply_spec(root, spec, new=False):
    """Merge validated typed options into ``root`` in place; return the list of change messages.

    Options that are None are left as they are. Raises InvalidParameter when the merged
    definition would be inconsistent (DHCP outside the subnet, nat without an address).
    """
    changes = []
    have_fwd = forward_mode(root)
    want_fwd = spec.get('forward')
    if want_fwd is not None and want_fwd != have_fwd:
        _set_forward(root, want_fwd, have_fwd, spec, changes, new)
    fwd = forward_mode(root)
    _apply_bridge(root, spec, changes, new)
    _apply_mtu(root, spec.get('mtu'), changes, new)
    _apply_domain(root, spec.get('domain'), changes, new)
    ip_node = _apply_ip(root, spec, changes, new)
    if spec.get('dhcp') is not None:
        _apply_dhcp(root, ip_node, spec['dhcp'], changes, new)
    if spec.get('ipv6') is not None:
        _apply_ipv6(root, spec['ipv6'], changes, new)
    _check_consistency(root, fwd, spec)
    return changes


def _set_forward(root, want, have, spec, changes, new):
    _remove(root.find('forward'))
    if want != 'isolated':
        _place(root, X.element('forward', mode=want))
    if not new:
        changes.append('forward mode %s -> %s' % (have, want))
    if want == 'bridge':
        # A host bridge has no libvirt-managed address, DNS, MTU or STP settings.
        for tag in ('ip', 'domain', 'dns', 'mtu', 'mac', 'route'):
            for node in root.findall(tag):
                _remove(node)
                if not new:
                    changes.append('%s removed (not used with forward bridge)' % tag)
        bridge = root.find('bridge')
        if bridge is not None:
            for attr in ('stp', 'delay', 'zone'):
                bridge.attrib.pop(attr, None)
    elif have == 'bridge' and spec.get('bridge') is None:
        # the old name is a host bridge: let libvirt create its own
        _remove(root.find('bridge'))


def _apply_bridge(root, spec, changes, new):
    want = spec.get('bridge')
    if want is None:
        return
    node = root.find('bridge')
    if node is None:
        node = _place(root, X.element('bridge'))
    have = node.get('name')
    if have != want:
        node.set('name', want)
        if not new:
            changes.append('bridge %s -> %s' % (have or '(generated)', want))


def _apply_mtu(root, want, changes, new):
    if want is None:
        return
    node = root.find('mtu')
    have = int(node.get('size')) if node is not None and (node.get('size') or '').isdigit() else None
    if have == want:
        return
    if node is None:
        node = _place(root, X.element('mtu'))
    node.set('size', str(want))
    if not new:
        changes.append('mtu %s -> %s' % (have or 'default', want))


def _apply_domain(root, want, changes, new):
    if want is None:
        return
    node = root.find('domain')
    have = node.get('name') if node is not None else None
    if (have or '') == want:
        return
    if not want:
        _remove(node)
        changes.append('DNS domain %s removed' % have)
        return
    if node is None:
        node = _place(root, X.element('domain'))
    node.set('name', want)
    if not new:
        changes.append('DNS domain %s -> %s' % (have or '(none)', want))


def _apply_ip(root, spec, changes, new):
    nodes = ipv4_nodes(root)
    node = nodes[0] if nodes else None
    want = spec.get('_iface')
    if want is None:
        return node
    have = ip_interface(node)
    if have == want:
        return node
    if node is None:
        node = _place(root, X.element('ip'))
    node.set('address', str(want.ip))
    for attr in ('netmask', 'prefix', 'family'):
        node.attrib.pop(attr, None)
    if spec.get('_mask_form') == 'netmask':
        node.set('netmask', str(want.netmask))
    else:
        node.set('prefix', str(want.network.prefixlen))
    if not new:
        changes.append('address %s -> %s' % (have.with_prefixlen if have else '(none)', want.with_prefixlen))
    return node


def _apply_ipv6(root, v6, changes, new):
    nodes = ipv6_nodes(root)
    node = nodes[0] if nodes else None
    have = ipv6_interface(node)
    want = v6['_iface']
    if want is None:
        for old in nodes:
            _remove(old)
        if nodes and not new:
            changes.append('IPv6 address %s removed' % (have.with_prefixlen if have else '(none)'))
        return
    if have != want:
        if node is None:
            node = _place(root, X.element('ip', family='ipv6'))
        for attr in ('netmask', 'prefix', 'address', 'family'):
            node.attrib.pop(attr, None)
        node.set('family', 'ipv6')
        node.set('address', str(want.ip))
        node.set('prefix', str(want.network.prefixlen))
        if not new:
            changes.append('IPv6 address %s -> %s' % (have.with_prefixlen if have else '(none)', want.with_prefixlen))
    ranges = v6.get('dhcp_ranges')
    if ranges is None:
        return
    dhcp = node.find('dhcp')
    have_ranges = [_range_key(r) for r in dhcp.findall('range')] if dhcp is not None else []
    if sorted(have_ranges) == sorted(ranges):
        return
    if dhcp is None:
        dhcp = X.sub(node, 'dhcp')
    for old in dhcp.findall('range'):
        dhcp.remove(old)
    anchor = dhcp.find('host')
    for start, end in ranges:
        elem = X.element('range', start=start, end=end)
        if anchor is not None:
            anchor.addprevious(elem)
        else:
            dhcp.append(elem)
    if len(dhcp) == 0:
        node.remove(dhcp)
    if not new:
        changes.extend('DHCPv6 range %s-%s removed' % r for r in have_ranges if r not in ranges)
        changes.extend('DHCPv6 range %s-%s added' % r for r in ranges if r not in have_ranges)


def _host_key(node_or_dict):
    get = node_or_dict.get
    return ((get('mac') or '').lower(), get('ip') or '', get('name') or '')


def _range_key(node_or_dict):
    return (str(ipaddress.ip_address(node_or_dict.get('start'))), str(ipaddress.ip_address(node_or_dict.get('end'))))


def _apply_dhcp(root, ip_node, dhcp, changes, new):
    if ip_node is None:
        raise InvalidParameter('dhcp', 'needs an IPv4 address on the network: give ip')
    node = ip_node.find('dhcp')
    if node is None:
        node = X.sub(ip_node, 'dhcp')
        # keep <tftp> (if any) before <dhcp>
    ranges, hosts = dhcp.get('ranges'), dhcp.get('hosts')
    if ranges is not None:
        have = [_range_key(r) for r in node.findall('range')]
        want = [(r['start'], r['end']) for r in ranges]
        if sorted(have) != sorted(want):
            for old in node.findall('range'):
                node.remove(old)
            anchor = node.find('host')
            for start, end in want:
                elem = X.element('range', start=start, end=end)
                if anchor is not None:
                    anchor.addprevious(elem)
                else:
                    node.append(elem)
            if not new:
                changes.extend('DHCP range %s-%s removed' % r for r in have if r not in want)
                changes.extend('DHCP range %s-%s added' % r for r in want if r not in have)
    if hosts is not None:
        have = [_host_key(h) for h in node.findall('host')]
        want = [_host_key(h) for h in hosts]
        if sorted(have) != sorted(want):
            for old in node.findall('host'):
                node.remove(old)
            anchor = node.find('bootp')
            for host in hosts:
                elem = X.element('host', mac=host.get('mac'), name=host.get('name'), ip=host['ip'])
                if anchor is not None:
                    anchor.addprevious(elem)
                else:
                    node.append(elem)
            if not new:
                changes.extend('DHCP host %s removed' % _describe_host(h) for h in have if h not in want)
                changes.extend('DHCP host %s added' % _describe_host(h) for h in want if h not in have)
    if len(node) == 0:
        ip_node.remove(node)


def _describe_host(key):
    mac, ip, name = key
    return '%s=%s' % (' '.join(p for p in (mac, name) if p), ip)


def _check_consistency(root, fwd, spec):
    v6_node = next(iter(ipv6_nodes(root)), None)
    v6_iface = ipv6_interface(v6_node)
    if v6_iface is not None and v6_node.find('dhcp') is not None:
        given = (spec.get('ipv6') or {}).get('dhcp_ranges') is not None
        for node in v6_node.find('dhcp').findall('range'):
            start, end = ipaddress.ip_address(node.get('start')), ipaddress.ip_address(node.get('end'))
            if start not in v6_iface.network or end not in v6_iface.network:
                raise InvalidParameter(
                    'ipv6.dhcp_ranges' if given else 'ipv6.address',
                    'DHCPv6 range %s-%s is not inside %s' % (start, end, v6_iface.network),
                )
    ip_node = next(iter(ipv4_nodes(root)), None)
    iface = ip_interface(ip_node)
    if fwd in ROUTED_MODES and not root.findall('ip'):
        raise InvalidParameter('ip', 'forward %s needs an address for the host side of the network' % fwd)
    if fwd == 'bridge' and not (root.find('bridge') is not None and root.find('bridge').get('name')):
        raise InvalidParameter('bridge', 'required with forward: bridge (the existing host bridge)')
    dhcp = ip_node.find('dhcp') if ip_node is not None else None
    if dhcp is None or iface is None:
        return
    given = spec.get('dhcp') or {}
    net = iface.network
    usable = (net.network_address, net.broadcast_address)
    for index, node in enumerate(dhcp.findall('range')):
        option = 'dhcp.ranges[%d]' % index if given.get('ranges') is not None else 'ip'
        start, end = ipaddress.ip_address(node.get('start')), ipaddress.ip_address(node.get('end'))
        if start not in net or end not in net or start in usable or end in usable:
            raise InvalidParameter(
                option, 'DHCP range %s-%s is not inside the usable addresses of %s' % (start, end, net)
            )
    for index, node in enumerate(dhcp.findall('host')):
        option = 'dhcp.hosts[%d].ip' % index if given.get('hosts') is not None else 'ip'
        addr = ipaddress.ip_address(node.get('ip'))
        if addr not in net or addr in usable:
            raise InvalidParameter(
                option, 'DHCP host address %s is not inside the usable addresses of %s' % (addr, net)
            )
        if addr == iface.ip:
            raise InvalidParameter(option, 'DHCP host address %s is the address of the host side' % addr)


# ---------------------------------------------------------------------------------------------
# Full XML given by the user


def parse_user_xml(text, name):
    try:
        root = X.parse(text)
    except X.XMLSyntaxError as exc:
        raise InvalidParameter('xml', 'not well-formed XML: %s' % exc) from None
    if root.tag != 'network':
        raise InvalidParameter('xml', 'root element must be <network>, got <%s>' % root.tag)
    xml_name = X.findtext(root, 'name')
    if xml_name != name:
        raise InvalidParameter('xml', 'the <name> in xml (%r) differs from name (%r)' % (xml_name, name))
    bridge = root.find('bridge')
    if bridge is not None and bridge.get('name'):
        validate_bridge_name('xml', bridge.get('name'))
    return root


def inherit_generated(desired, current):
    """Copy what libvirt generated for ``current`` (uuid, MAC, bridge name) into ``desired``
    where the user's XML does not state it, so a re-definition keeps them."""
    tree = copy.deepcopy(desired)
    uuid = X.findtext(current, 'uuid')
    want_uuid = X.findtext(tree, 'uuid')
    if want_uuid and uuid and want_uuid.lower() != uuid.lower():
        raise InvalidParameter(
            'xml', "the <uuid> in xml (%s) differs from the existing network's (%s)" % (want_uuid, uuid)
        )
    if not want_uuid and uuid:
        tree.find('name').addnext(X.element('uuid', uuid))
    same_kind = (forward_mode(tree) == 'bridge') == (forward_mode(current) == 'bridge')
    have_mac = current.find('mac')
    if tree.find('mac') is None and have_mac is not None and forward_mode(tree) != 'bridge':
        _place(tree, copy.deepcopy(have_mac))
    have_bridge = current.find('bridge')
    if same_kind and have_bridge is not None and have_bridge.get('name'):
        node = tree.find('bridge')
        if node is None:
            node = _place(tree, X.element('bridge'))
        if not node.get('name'):
            node.set('name', have_bridge.get('name'))
    return tree


# ---------------------------------------------------------------------------------------------
# Comparison


def canonical(root):
    """Copy of ``root`` without what libvirt adds or spells differently, for comparison."""
    tree = copy.deepcopy(root)
    for node in tree.iter():
        if isinstance(node.tag, str):
            node.attrib.pop('connections', None)
    bridge = tree.find('bridge')
    if bridge is not None:
        if bridge.get('stp') in ('on', 'yes'):
            del bridge.attrib['stp']
        if bridge.get('delay') == '0':
            del bridge.attrib['delay']
        if not bridge.attrib and len(bridge) == 0:
            _remove(bridge)
    forward = tree.find('forward')
    if forward is not None:
        forward.set('mode', forward.get('mode') or 'nat')
        nat = forward.find('nat')
        if nat is not None:
            port = nat.find('port')
            if port is not None and port.get('start') == '1024' and port.get('end') == '65535':
                _remove(port)
            if len(nat) == 0 and not nat.attrib:
                _remove(nat)
    mac = tree.find('mac')
    if mac is not None and mac.get('address'):
        mac.set('address', mac.get('address').lower())
    for ip_node in tree.findall('ip'):
        iface = ip_interface(ip_node) if ':' not in (ip_node.get('address') or '') else None
        if iface is not None:
            ip_node.attrib.pop('netmask', None)
            ip_node.set('prefix', str(iface.network.prefixlen))
            if ip_node.get('family') == 'ipv4':
                del ip_node.attrib['family']
        dhcp = ip_node.find('dhcp')
        if dhcp is None:
            continue
        for host in dhcp.findall('host'):
            if host.get('mac'):
                host.set('mac', host.get('mac').lower())
        _sort_children(dhcp, 'range', lambda n: (_ip_sort(n.get('start')), _ip_sort(n.get('end'))))
        _sort_children(dhcp, 'host', lambda n: (n.get('mac') or '', _ip_sort(n.get('ip')), n.get('name') or ''))
        if len(dhcp) == 0 and not dhcp.attrib:
            _remove(dhcp)
    return tree


def _ip_sort(value):
    try:
        return ipaddress.ip_address(value or '').packed.rjust(16, b'\0')
    except ValueError:
        return (value or '').encode()


def _sort_children(parent, tag, key):
    nodes = parent.findall(tag)
    if len(nodes) < 2:
        return
    for node in nodes:
        parent.remove(node)
    for node in sorted(nodes, key=key):
        parent.append(node)


def definition_differences(a, b):
    """Readable paths where two definitions differ after canonicalisation (both directions)."""
    ca, cb = canonical(a), canonical(b)
    out = differences(ca, cb)
    out.extend('removed: %s' % d for d in differences(cb, ca))
    return out


def same_definition(a, b):
    return not definition_differences(a, b)


# ---------------------------------------------------------------------------------------------
# DHCP changes a running network takes live


def _dhcp_ip_index(root):
    """Index (among all <ip> elements) of the single IPv4 <ip> carrying DHCP entries, else None."""
    found = [
        index
        for index, node in enumerate(root.findall('ip'))
        if node.find('dhcp') is not None and len(node.find('dhcp'))
    ]
    if len(found) != 1:
        return None
    node = root.findall('ip')[found[0]]
    return found[0] if node in ipv4_nodes(root) else None


def _without_dhcp_entries(root):
    tree = copy.deepcopy(root)
    for dhcp in tree.iter('dhcp'):
        for node in dhcp.findall('range') + dhcp.findall('host'):
            dhcp.remove(node)
    return tree


def dhcp_update_plan(current, new):
    """networkUpdate operations turning ``current`` into ``new`` when they differ only in DHCP
    ranges/hosts (of one IPv4 address that has DHCP on both sides); None otherwise.

    Each operation is ``(command, section, parent_index, xml)`` with command ``delete``/``add`` and
    section ``range``/``host``; deletions come first so a host can move to another address.
    """
    cur, want = canonical(current), canonical(new)
    index = _dhcp_ip_index(cur)
    if index is None or index != _dhcp_ip_index(want):
        return None
    if not same_definition(_without_dhcp_entries(cur), _without_dhcp_entries(want)):
        return None
    cur_dhcp = cur.findall('ip')[index].find('dhcp')
    want_dhcp = want.findall('ip')[index].find('dhcp')
    ops = []
    for section in ('host', 'range'):
        have = {X.tostring(n).strip(): n for n in cur_dhcp.findall(section)}
        wanted = {X.tostring(n).strip(): n for n in want_dhcp.findall(section)}
        ops.extend(('delete', section, index, text) for text in have if text not in wanted)
    for section in ('range', 'host'):
        have = {X.tostring(n).strip() for n in cur_dhcp.findall(section)}
        ops.extend(
            ('add', section, index, X.tostring(n).strip())
            for n in want_dhcp.findall(section)
            if X.tostring(n).strip() not in have
        )
    return ops
