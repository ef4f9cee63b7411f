# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Manager of ``storage_pool_info`` (read only: a plan without steps, the facts in ``report``),
apart from ``pool`` so that the info module does not compile the ``storage_pool`` manager on every
run."""

from __future__ import annotations

from ansible_collections.virtops.libvirt.plugins.module_utils._core import xml as X
from ansible_collections.virtops.libvirt.plugins.module_utils._core.argspec import check_object_name
from ansible_collections.virtops.libvirt.plugins.module_utils._core.errors import ObjectNotFound
from ansible_collections.virtops.libvirt.plugins.module_utils._core.plan import Manager, Plan
from ansible_collections.virtops.libvirt.plugins.module_utils._storage import read as S
from ansible_collections.virtops.libvirt.plugins.module_utils._storage.read import (
    POOL_STATES,
    describe_volume,
    pool_xml,
)


class PoolInfo(Manager):
    """Runner of ``storage_pool_info``: reads only (a plan without steps); :meth:`report` gives the facts."""

    facts_only = True

    def __init__(self, client):
        super().__init__(client)
        self.pools = []

    def plan(self):
        name = self.params.get('name')
        if name is not None:
            check_object_name('name', name)
            pool = self.client.lookup('pool', name)
            if pool is None:
                raise ObjectNotFound("storage pool '%s' not found on %s" % (name, self.client.uri))
            self.pools = [pool]
        else:
            self.pools = self.client.call('listAllStoragePools', 0, what='storage pools')
        return Plan("storage pool '%s'" % name if name is not None else 'storage pools')

    def report(self, plan):
        described = [self._describe(pool) for pool in self.pools]
        described = [d for d in described if d is not None]
        described.sort(key=lambda p: p['name'])
        capabilities = self._capabilities()
        supported = None if capabilities is None else sorted(t for t, c in capabilities.items() if c['supported'])
        return dict(pools=described, supported_types=supported, capabilities=capabilities)

    def _describe(self, pool):
        lv = self.libvirt
        what = "storage pool '%s'" % pool.name()
        try:
            if self.params['refresh'] and pool.isActive():
                try:
                    pool.refresh(0)
                except lv.libvirtError as exc:
                    # a running upload/build holds the pool: report what libvirt knows
                    if not self.client.is_error(exc, 'VIR_ERR_OPERATION_INVALID', 'VIR_ERR_INTERNAL_ERROR'):
                        raise
            state, capacity, allocation, available = pool.info()
            xml = pool_xml(self.client, pool)
            autostart = bool(pool.autostart())
            persistent = bool(pool.isPersistent())
            uuid = pool.UUIDString()
        except lv.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_STORAGE_POOL'):
                return None  # removed while we looked
            raise self.client.error(exc, what) from None
        info = S.summarize_pool(X.parse(xml))
        info.update(
            uuid=uuid,
            state=POOL_STATES.get(state, 'inactive'),
            autostart=autostart,
            persistent=persistent,
            capacity=capacity,
            allocation=allocation,
            available=available,
        )
        if self.params['include_xml']:
            info['xml'] = xml
        info['volumes'] = []
        if info['state'] == 'active' and self.params['volumes']:
            for vol in self.client.call(pool.listAllVolumes, 0, what=what + ' volumes'):
                entry = describe_volume(self.client, vol)
                if entry is not None:
                    info['volumes'].append(entry)
            info['volumes'].sort(key=lambda v: v['name'])
        return info

    def _capabilities(self):
        lv = self.libvirt
        try:
            text = self.client.conn.getStoragePoolCapabilities(0)
        except lv.libvirtError as exc:
            if self.client.is_error(exc, 'VIR_ERR_NO_SUPPORT'):
                return None  # e.g. the test driver
            raise self.client.error(exc, 'storage pool capabilities') from None
        except AttributeError:
            return None  # libvirt-python older than 5.2
        caps = {}
        for node in X.parse(text).findall('pool'):
            entry = dict(
                supported=node.get('supported') == 'yes',
                volume_formats=[],
                source_formats=[],
                default_volume_format=None,
                default_source_format=None,
            )
            for section, key in (('volOptions', 'volume'), ('poolOptions', 'source')):
                opts = node.find(section)
                if opts is None:
                    continue
                default = opts.find('defaultFormat')
                if default is not None:
                    entry['default_%s_format' % key] = default.get('type')
                for enum in opts.findall('enum'):
                    entry['%s_formats' % key] = [v.text for v in enum.findall('value')]
            caps[node.get('type')] = entry
        return caps
