# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
name: libvirt
short_description: Guests of one or more libvirt hypervisors as inventory hosts
version_added: 0.1.0
author:
  - virtops.libvirt maintainers (@virtops)
description:
  - Reads the guests (domains) of one or more libvirt connections and adds each one as a host.
  - Hosts are grouped by run state (C(libvirt_running), C(libvirt_stopped), ...) and by the
    hypervisor they run on (C(libvirt_host_<host>)). The group prefix is O(group_prefix).
  - C(ansible_host) is set to an address of a running guest, reported by the QEMU guest agent or
    found in the DHCP leases of libvirt networks (see O(address_source)).
  - Host variables C(libvirt_uuid), C(libvirt_state), C(libvirt_vcpus), C(libvirt_memory) and
    C(libvirt_current_memory) (bytes), C(libvirt_persistent), C(libvirt_autostart), C(libvirt_uri),
    C(libvirt_host), C(libvirt_addresses) and C(libvirt_address_source) describe each guest.
  - Supports C(compose), C(groups) and C(keyed_groups) from the constructed plugin, and caching.
  - The hypervisors are read in parallel (see O(workers)); each is read with a constant number of
    libvirt calls (bulk statistics), plus one address lookup per running guest.
  - The inventory source must be a YAML file whose name ends with C(libvirt.yml) or C(libvirt.yaml).
requirements:
  - libvirt-python (the C(libvirt) Python module) on the controller
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as an inventory source of this plugin.
    type: str
    required: true
    choices: [virtops.libvirt.libvirt]
    version_added: 0.1.0
  uris:
    description:
      - libvirt connection URIs to read guests from, for example V(qemu:///system),
        V(qemu+ssh://root@kvm1.example.com/system) or V(test+unix:///default).
      - The controller connects to each of them (for remote hypervisors, an SSH URI and a key
        the controller can use).
    type: list
    elements: str
    default: [qemu:///system]
    version_added: 0.1.0
  address_source:
    description:
      - Where the addresses of running guests come from. V(agent) asks the QEMU guest agent,
        V(lease) reads the DHCP leases of libvirt networks, V(arp) the host's ARP table.
        V(any) tries agent, then lease, then arp, and uses the first that answers.
        V(none) reads no addresses (and sets no C(ansible_host)).
    type: str
    choices: [none, agent, lease, arp, any]
    default: any
    version_added: 0.1.0
  address_family:
    description:
      - The address family preferred for C(ansible_host). When a guest has no usable address of
        that family, an address of the other family is used. Loopback and link-local addresses are
        never used.
    type: str
    choices: [ipv4, ipv6, any]
    default: ipv4
    version_added: 0.1.0
  states:
    description:
      - Only guests in these run states become hosts. All guests when empty.
    type: list
    elements: str
    choices: [running, paused, stopped, shutting_down, crashed, pmsuspended, unknown]
    default: []
    version_added: 0.1.0
  include:
    description:
      - Only guests whose names match one of these glob patterns become hosts (shell-style
        wildcards C(*), C(?), C([abc]), C([!abc]), matched against the whole name,
        case-sensitively). All guests when empty.
      - Applied before O(states), O(exclude) and the address lookup, so a guest that is not
        included is not read at all.
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  exclude:
    description:
      - Guests whose names match one of these glob patterns do not become hosts, even when they
        match O(include).
    type: list
    elements: str
    default: []
    version_added: 0.1.0
  hostname:
    description:
      - What names the hosts. V(name) is the guest name, V(uuid) the guest UUID.
      - Two guests of different URIs with the same name would collide; the second one is then
        named C(<name>_<first 8 characters of its UUID>) and a warning is shown.
    type: str
    choices: [name, uuid]
    default: name
    version_added: 0.1.0
  group_prefix:
    description: Prefix of the state and hypervisor groups this plugin creates.
    type: str
    default: libvirt_
    version_added: 0.1.0
  workers:
    description:
      - How many hypervisors of O(uris) are read at the same time, each by its own thread over
        its own libvirt connection. V(1) (or less) reads them one after another.
      - The result does not depend on it. Hosts, groups and the order in which duplicate names
        are renamed always follow the order of O(uris).
    type: int
    default: 16
    version_added: 0.1.0
  unreachable:
    description:
      - What happens when a hypervisor of O(uris) cannot be connected to or read.
      - V(warn) shows a warning naming the URI and the error and adds the guests of the other
        hypervisors; the inventory fails only when no hypervisor could be read. A read with a
        failed hypervisor is never stored in the cache.
      - V(fail) fails the whole inventory source (after every hypervisor was tried), for
        where an incomplete inventory must not replace the last complete one (for example an
        AWX inventory source that overwrites its hosts, where a hypervisor down for a moment
        would remove its guests).
    type: str
    choices: [warn, fail]
    default: warn
    version_added: 0.1.0
notes:
  - The controller needs libvirt access to every URI (root, the C(libvirt) group, or an SSH URI).
  - With caching enabled, guests are read again only when the cache expires or with
    C(--flush-cache).
  - An SSH URI that cannot reach its host can take as long as the SSH connect timeout; the other
    hypervisors are read meanwhile.
  - With C(qemu+ssh://) URIs nearly all the time of a read is the SSH connection set-up, done by
    the controller's C(ssh) client, which reads the usual C(ssh_config) files. For many hypervisors
    configure connection reuse for them there (C(ControlMaster auto), C(ControlPath) in a private
    directory, C(ControlPersist)) and, where policy allows, a cheaper key exchange
    (C(KexAlgorithms curve25519-sha256)); the collection's connections guide has a complete example.
seealso:
  - module: virtops.libvirt.guest_info
  - name: libvirt connection URIs
    description: The URI formats libvirt understands.
    link: https://libvirt.org/uri.html
"""

EXAMPLES = r"""
# inventory/hypervisors.libvirt.yml: every guest of two KVM hosts
plugin: virtops.libvirt.libvirt
uris:
  - qemu+ssh://root@kvm1.example.com/system
  - qemu+ssh://root@kvm2.example.com/system
address_source: agent

# inventory/web.libvirt.yml: the web and db guests, without the ones being built (web-tmp-*)
plugin: virtops.libvirt.libvirt
uris: [qemu:///system]
include: ['web-*', 'db-*']
exclude: ['web-tmp-*']

# inventory/running.libvirt.yml: running guests only, grouped by a naming convention, cached
plugin: virtops.libvirt.libvirt
uris: [qemu:///system]
states: [running]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ansible-libvirt-inventory
cache_timeout: 300
keyed_groups:
  # web-1, web-2 -> group role_web
  - key: inventory_hostname.split('-')[0]
    prefix: role
groups:
  big_guests: libvirt_memory >= 8 * 1024 ** 3
compose:
  ansible_user: "'root'"
"""

import functools
from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.virtops.libvirt.plugins.module_utils._guest.inventory import collect, pick_address

try:
    import libvirt  # pylint: disable=import-error
except ImportError:
    libvirt = None


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = 'virtops.libvirt.libvirt'

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(('libvirt.yml', 'libvirt.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option('cache') and cache
        update_cache = self.get_option('cache') and not cache
        guests = None
        self._taken = {}  # host name -> URI of the guest that has it (duplicates are renamed)
        if use_cache:
            try:
                guests = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if guests is None:
            guests, failures = self._read_guests()  # adds the hosts as it reads
            if failures:
                update_cache = False  # never keep a read that misses a hypervisor's guests
        else:
            self._populate(guests)
        if update_cache:
            self._cache[cache_key] = guests

    # -- reading ----------------------------------------------------------------------------
    def _read_guests(self):
        """Read the guests of every URI and add them to the inventory; return them, in the order of
        ``uris`` (each URI's sorted by name), and the messages of the URIs that could not be read.

        The URIs are read by up to ``workers`` threads, each over its own connection
        (libvirt-python releases the GIL in its calls). A URI's guests are added as soon as it and
        every URI before it are read, while the later ones are still being read, so the hosts and
        the renaming of duplicates follow the order of ``uris`` whatever the timing. With
        ``unreachable: fail`` nothing is added before every URI was read without failure.
        """
        if libvirt is None:
            raise AnsibleError('The virtops.libvirt.libvirt inventory plugin needs libvirt-python on the controller.')
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)  # errors are raised, not printed
        uris = self.get_option('uris')
        read_one = functools.partial(
            _read_uri,
            source=self.get_option('address_source'),
            states=self.get_option('states'),
            include=self.get_option('include'),
            exclude=self.get_option('exclude'),
        )
        workers = max(1, min(self.get_option('workers'), len(uris)))
        as_read = self.get_option('unreachable') == 'warn'
        read = []
        for found, failure in _in_order(read_one, uris, workers):
            read.append((found, failure))
            if as_read:
                self._populate(found)
        failures = [failure for (found, failure) in read if failure]
        if failures and (len(failures) == len(uris) or not as_read):
            raise AnsibleParserError('; '.join(failures))  # with `warn`, every URI failed: nothing was added
        for failure in failures:
            self.display.warning('libvirt inventory: %s; its guests are left out' % failure)
        if not as_read:
            for entry in read:
                self._populate(entry[0])
        return [guest for (found, failure) in read for guest in found], failures

    # -- building the inventory ---------------------------------------------------------------
    def _populate(self, guests):
        prefix = self.get_option('group_prefix')
        strict = self.get_option('strict')
        taken = self._taken
        for guest in guests:
            hostname = guest['uuid'] if self.get_option('hostname') == 'uuid' else guest['name']
            if hostname in taken and taken[hostname] != guest['uri']:
                renamed = '%s_%s' % (hostname, guest['uuid'][:8])
                self.display.warning(
                    "libvirt inventory: guest '%s' of %s has the same name as a guest of %s; adding it as '%s'"
                    % (hostname, guest['uri'], taken[hostname], renamed)
                )
                hostname = renamed
            taken[hostname] = guest['uri']
            self.inventory.add_host(hostname)
            hostvars = self._host_vars(guest)
            for key, value in hostvars.items():
                self.inventory.set_variable(hostname, key, value)
            for group in (prefix + guest['state'], '%shost_%s' % (prefix, guest['host'])):
                added = self.inventory.add_group(self._sanitize_group_name(group))
                self.inventory.add_child(added, hostname)
            self._set_composite_vars(self.get_option('compose'), hostvars, hostname, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), hostvars, hostname, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, hostname, strict=strict)

    def _host_vars(self, guest):
        hostvars = {
            'libvirt_%s' % key: guest[key]
            for key in (
                'uuid',
                'state',
                'vcpus',
                'memory',
                'current_memory',
                'persistent',
                'autostart',
                'uri',
                'host',
                'addresses',
                'address_source',
            )
        }
        hostvars['libvirt_name'] = guest['name']
        address = pick_address(guest['addresses'], self.get_option('address_family'))
        if address:
            hostvars['ansible_host'] = address
        return hostvars


def _ignore_libvirt_error(ctx, err):
    """libvirt's error handler: the error is raised as libvirtError, not printed as well."""


def _in_order(read_one, uris, workers):
    """``read_one(uri)`` of every URI, yielded in the order of ``uris`` as soon as it and every URI
    before it are read; up to ``workers`` URIs are read at the same time."""
    if workers == 1:
        for uri in uris:
            yield read_one(uri)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix='libvirt-inventory') as pool:
        yield from pool.map(read_one, uris)


def _read_uri(uri, source, states, include, exclude):
    """``(guests, None)`` of one URI, or ``([], message)`` when it cannot be connected to or read."""
    try:
        # read-write: libvirt refuses agent queries on read-only connections
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        return [], 'Cannot connect to libvirt at %s: %s' % (uri, exc)
    try:
        return collect(conn, uri, source, libvirt, states=states, include=include, exclude=exclude), None
    except libvirt.libvirtError as exc:
        return [], 'Reading the guests of %s failed: %s' % (uri, exc)
    finally:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass  # the connection broke while it was read: the error above says so
