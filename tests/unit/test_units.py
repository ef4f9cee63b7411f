# SPDX-License-Identifier: GPL-3.0-or-later
import pytest

from ansible_collections.virtops.libvirt.plugins.module_utils._core.units import human, parse_size, to_unit


@pytest.mark.parametrize(
    'value, unit, expected',
    [
        ('512MiB', 'B', 512 * 1024**2),
        ('2GiB', 'B', 2 * 1024**3),
        ('10G', 'B', 10 * 1024**3),
        ('10GB', 'B', 10 * 1000**3),
        ('1.5 TiB', 'B', int(1.5 * 1024**4)),
        ('4k', 'B', 4096),
        ('100', 'MiB', 100 * 1024**2),
        (100, 'MiB', 100 * 1024**2),
        ('7bytes', 'MiB', 7),
        ('0', 'B', 0),
    ],
)
def test_parse_size(value, unit, expected):
    assert parse_size(value, default_unit=unit) == expected


@pytest.mark.parametrize('value', ['-1', -5, 'ten', '5 parsecs', '', True, None, [1], '1e9', '99999999999EiB'])
def test_parse_size_rejects(value):
    with pytest.raises(ValueError):
        parse_size(value)


def test_to_unit_rounds_up_and_human():
    assert to_unit(1025, 'KiB') == 2
    assert to_unit(512 * 1024**2, 'KiB') == 524288
    assert human(1536 * 1024**2) == '1.5 GiB'
    assert human(1024) == '1 KiB'
