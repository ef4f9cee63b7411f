# -*- coding: utf-8 -*-
# Copyright (c) virtops.libvirt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cloud-init NoCloud seed of a guest (``guest``'s ``cloud_init`` option), pure Python.

* :func:`seed_files` renders the option into the seed's files (``user-data``, ``meta-data``,
  ``network-config``); dicts become YAML through :func:`to_yaml` (no PyYAML on the managed host).
* :func:`build_iso` writes them as an ISO 9660 image with Joliet and Rock Ridge names and the volume
  label ``cidata``, byte for byte the same for the same files (fixed timestamps), so that comparing
  the image with the volume tells whether the seed is current; :func:`read_iso` reads the files of
  such an image back (the before side of the diff).
* :func:`secret_values` and :func:`masked_text`: what no output may show (passwords, private keys)
  and the text the diff shows instead.

No libvirt here: ``_guest/cloud_init.py`` reads and compares, ``_guest/apply.py`` writes the volume.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct

LABEL = 'cidata'
SECTOR = 2048
MASK = '<secret>'  # what the diff shows for a secret (not Ansible's no_log mask)


# ---------------------------------------------------------------------------------------------
# YAML (the subset cloud-init configs need: dicts, lists, strings, numbers, booleans, null)

_PLAIN = re.compile(r'^[A-Za-z_/][A-Za-z0-9 _./@+=,:~%()-]*$')
_SPECIAL = {'y', 'n', 'yes', 'no', 'on', 'off', 'true', 'false', 'null', '~'}
_PRINTABLE = re.compile('[\x09\x0a\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$')


def _quoted(text):
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append('\\' + char)
        elif char == '\n':
            out.append('\\n')
        elif char == '\t':
            out.append('\\t')
        elif code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029, 0xFEFF) or 0xD800 <= code <= 0xDFFF:
            out.append('\\u%04x' % code if code <= 0xFFFF else '\\U%08x' % code)
        elif code in (0xFFFE, 0xFFFF):
            out.append('\\u%04x' % code)
        else:
            out.append(char)
    out.append('"')
    return ''.join(out)


def _scalar(value):
    if value is None:
        return 'null'
    if value is True or value is False:
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return '.nan'
        if value in (float('inf'), float('-inf')):
            return '.inf' if value > 0 else '-.inf'
        mantissa, e, exponent = repr(value).partition('e')
        # YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent
        return mantissa + ('' if '.' in mantissa else '.0') + (e + exponent if e else '')
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _SPECIAL and not text.endswith((' ', ':')) and ': ' not in text:
        return text
    return _quoted(text)


def _literal(text):
    """Whether ``text`` (several lines) can be written as a literal block scalar unchanged."""
    if '\n' not in text or not _PRINTABLE.match(text) or '\t' in text or '\ufeff' in text:
        return False
    body = text.rstrip('\n')
    if not body or body != body.lstrip('\n'):
        return False
    # trailing spaces and blank lines made of spaces do not survive every reader unchanged
    return all(line == line.rstrip(' ') for line in body.split('\n'))


def _block(text, indent):
    body = text.rstrip('\n')
    trailing = len(text) - len(body)
    chomp = '-' if trailing == 0 else ('' if trailing == 1 else '+')
    pad = ' ' * indent
    lines = ['|2%s' % chomp] + [(pad + line) if line else '' for line in body.split('\n')]
    lines += [''] * (trailing - 1)
    return lines


def _emit(value, indent):
    """Lines of ``value`` as a block node whose content starts at column ``indent``."""
    pad = ' ' * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            head = pad + _scalar(key) + ':'
            lines.extend(_item(head, item, indent))
        return lines
    for item in value:
        lines.extend(_item(pad + '-', item, indent))
    return lines


def _item(head, item, indent):
    if isinstance(item, (dict, list)) and item:
        nested = _emit(item, indent + 2)
        if head.lstrip().startswith('-'):
            # a dict or list in a list starts on the dash's line: "- key: value", "- - item"
            return [head + ' ' + nested[0][indent + 2 :]] + nested[1:]
        return [head] + nested
    if isinstance(item, (dict, list)):
        return [head + (' {}' if isinstance(item, dict) else ' []')]
    if isinstance(item, str) and _literal(item):
        block = _block(item, indent + 2)
        return [head + ' ' + block[0]] + block[1:]
    return [head + ' ' + _scalar(item)]


def to_yaml(value):
    """``value`` (dict or list) as block-style YAML that PyYAML's safe_load reads back equal."""
    if isinstance(value, (dict, list)) and value:
        return '\n'.join(_emit(value, 0)) + '\n'
    if isinstance(value, (dict, list)):
        return '{}\n' if isinstance(value, dict) else '[]\n'
    return _scalar(value) + '\n'


# ---------------------------------------------------------------------------------------------
# The seed's files


def seed_files(guest, option):
    """``{file name: bytes}`` of the seed for the ``cloud_init`` option ``option`` of guest
    ``guest`` (checked by :func:`check_option`)."""
    user_data = option.get('user_data')
    if user_data is None:
        user = b''
    elif isinstance(user_data, dict):
        user = ('#cloud-config\n' + (to_yaml(user_data) if user_data else '')).encode('utf-8')
    else:
        user = user_data.encode('utf-8', 'surrogateescape')
    meta = {'instance-id': guest, 'local-hostname': guest}
    meta.update(option.get('meta_data') or {})
    files = {'meta-data': to_yaml(meta).encode('utf-8'), 'user-data': user}
    if option.get('network_config') is not None:
        files['network-config'] = to_yaml(option['network_config']).encode('utf-8')
    return files


def check_option(option):
    """The ``cloud_init`` option's values of the wrong kind: [(suboption, message)]."""
    problems = []
    user_data = option.get('user_data')
    if user_data is not None and not isinstance(user_data, (str, dict)):
        problems.append(
            ('user_data', 'must be a dict (rendered as #cloud-config) or a string, got %s' % type(user_data).__name__)
        )
    for key in ('meta_data', 'network_config'):
        value = option.get(key)
        if value is not None and not isinstance(value, dict):
            problems.append((key, 'must be a dict, got %s' % type(value).__name__))
    for key in ('user_data', 'meta_data', 'network_config'):
        value = option.get(key)
        if isinstance(value, dict):
            bad = _unrenderable(value)
            if bad:
                problems.append((key, bad))
    meta = option.get('meta_data') or {}
    if isinstance(meta, dict) and 'instance-id' in meta and not isinstance(meta['instance-id'], str):
        problems.append(('meta_data', 'instance-id must be a string'))
    return problems


def _unrenderable(value, where=''):
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                return 'key %r%s is not a string' % (key, ' under %s' % where if where else '')
            found = _unrenderable(item, '%s.%s' % (where, key) if where else str(key))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _unrenderable(item, '%s[%d]' % (where, index))
            if found:
                return found
    elif not isinstance(value, (str, int, float, bool)) and value is not None:
        return 'the value at %s (%s) cannot be written as YAML' % (where or 'top', type(value).__name__)
    return None


# ---------------------------------------------------------------------------------------------
# Secrets: never in results, diffs or logs

_SECRET_KEY = re.compile(r'pass|secret|token|private|psk', re.IGNORECASE)
_KEY_LINE = re.compile(r'^(\s*(?:- )*)("?)([^\s:"][^:"]*)\2:(?:\s+(.*))?$')
_BEGIN_KEY = re.compile(r'-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----')
_END_KEY = re.compile(r'-----END [A-Z0-9 ]*PRIVATE KEY-----')


def _secret_key(key):
    return bool(_SECRET_KEY.search(str(key)))


def _plausible(value):
    """A value worth masking: not a word that shows up everywhere (a boolean, a short token)."""
    return len(value) >= 4 and value.lower() not in _SPECIAL


def secret_values(value, key=None, secret=False, parent=None):
    """Every string of ``value`` (an option's dict, list or text) that is a secret: under a key
    naming a password, secret, token, private key or PSK (``passwd``, ``hashed_passwd``,
    ``plain_text_passwd``, ``ssh_keys.rsa_private`` ...), ``chpasswd.list``, a private key block,
    and in a ``#cloud-config`` text the values :func:`masked_text` masks. Each line of a
    multi-line secret too, since a line can show up on its own. Short values and booleans are
    left out: masking them would mask every such word of the output."""
    found = set()
    secret = secret or (key is not None and _secret_key(key)) or (parent == 'chpasswd' and key == 'list')
    if isinstance(value, dict):
        for item_key, item in value.items():
            found |= secret_values(item, item_key, secret, key)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= secret_values(item, key, secret, parent)
    elif isinstance(value, str):
        if secret:
            found |= _text_and_lines(value)
        elif _BEGIN_KEY.search(value):
            found |= _key_blocks(value)
        if key is None and value.startswith('#cloud-config'):
            found |= _masked(value)[1]
    return {text for text in found if _plausible(text)}


def _text_and_lines(text):
    found = {text.strip()}
    for line in text.splitlines():
        found.add(line.strip())
        if ':' in line:
            found.add(line.split(':', 1)[1].strip())  # chpasswd's "user:password"
    return found


def _key_blocks(text):
    found = set()
    inside = False
    for line in text.splitlines():
        if _BEGIN_KEY.search(line):
            inside = True
        elif _END_KEY.search(line):
            inside = False
        elif inside and line.strip():
            found.add(line.strip())
    return found


def masked_text(text):
    """``text`` (a YAML file of the seed) as the diff shows it: the value of every key that names
    a secret (with everything indented under it) and every private key block replaced by
    ``<secret>``. Works line by line, so the before side (read back from the volume) and the
    after side are masked alike."""
    return _masked(text)[0]


def _masked(text):
    out, secrets = [], set()
    under = None  # indentation of the secret key whose nested lines are being masked
    inside_key = False
    for line in text.split('\n'):
        indent = len(line) - len(line.lstrip(' -'))
        if under is not None:
            if not line.strip() or indent > under:
                secrets |= _text_and_lines(line.strip(' -'))
                continue
            under = None
        if inside_key:
            if _END_KEY.search(line):
                inside_key = False
            if line.strip():
                secrets.add(line.strip())
            continue
        if _BEGIN_KEY.search(line):
            out.append(line[: len(line) - len(line.lstrip())] + MASK)
            inside_key = not _END_KEY.search(line)
            continue
        match = _KEY_LINE.match(line)
        if match and (_secret_key(match.group(3)) or match.group(3) == 'chpasswd'):
            rest = (match.group(4) or '').strip()
            out.append('%s%s%s%s: %s' % (match.group(1), match.group(2), match.group(3), match.group(2), MASK))
            if rest and not rest.startswith(('|', '>')):
                secrets |= {rest, rest.strip('\'"')}
            under = indent
            continue
        out.append(line)
    return '\n'.join(out), {text for text in secrets if _plausible(text)}


def digest(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def diff_text(volume, files):
    """The seed as the diff shows it: the files in order, YAML masked (:func:`masked_text`); a
    user-data that is no ``#cloud-config`` (a script) by its digest only."""
    if files is None:
        return '# cloud-init seed %s: not a seed this module can read\n' % volume
    lines = ['# cloud-init seed %s' % volume]
    for name in ('meta-data', 'user-data', 'network-config'):
        if name not in files:
            continue
        data = files[name]
        lines.append('## %s (%s, %d bytes)' % (name, digest(data), len(data)))
        text = data.decode('utf-8', 'replace')
        if name != 'user-data' or text.startswith('#cloud-config'):
            lines.append(masked_text(text).rstrip('\n'))
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------
# ISO 9660 + Joliet + Rock Ridge (one root directory of small files)

# fixed timestamps: the same files make the same image (2000-01-01 00:00:00 UTC)
_DR_DATE = bytes((100, 1, 1, 0, 0, 0, 0))
_VD_DATE = b'2000010100000000\x00'
_NO_DATE = b'0000000000000000\x00'
_ER_ID = b'RRIP_1991A'
_ER_DES = b'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS'
_ER_SRC = (
    b'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY '
    b'VOLUME DESCRIPTOR FOR CONTACT INFORMATION.'
)
_APPLICATION = 'VIRTOPS.LIBVIRT CLOUD-INIT SEED'


def _both16(value):
    return struct.pack('<H', value) + struct.pack('>H', value)


def _both32(value):
    return struct.pack('<I', value) + struct.pack('>I', value)


def _iso_name(name):
    """The ISO 9660 level 1 name of ``name``: 8.3 d-characters and the version ``;1``."""
    base, _dot, ext = name.rpartition('.') if '.' in name else (name, '', '')
    clean = [re.sub('[^A-Z0-9_]', '_', part.upper()) for part in (base, ext)]
    return '%s.%s;1' % (clean[0][:8], clean[1][:3])


def _susp(tag, payload):
    return tag + bytes((len(payload) + 4, 1)) + payload


def _px(mode, links):
    return _susp(b'PX', _both32(mode) + _both32(links) + _both32(0) + _both32(0))


def _record(identifier, extent, size, is_dir, system_use=b''):
    pad = b'' if len(identifier) % 2 else b'\x00'
    length = 33 + len(identifier) + len(pad) + len(system_use)
    length += length % 2
    if length > 255:
        raise ValueError('directory record too long (%d bytes)' % length)
    head = bytes((length, 0)) + _both32(extent) + _both32(size) + _DR_DATE
    head += bytes((2 if is_dir else 0, 0, 0)) + _both16(1) + bytes((len(identifier),))
    record = head + identifier + pad + system_use
    return record + b'\x00' * (length - len(record))


def _directory(records):
    """The records laid out in sectors (a record never crosses a sector boundary)."""
    out = bytearray()
    for record in records:
        if len(out) // SECTOR != (len(out) + len(record) - 1) // SECTOR:
            out.extend(b'\x00' * (-len(out) % SECTOR))
        out.extend(record)
    out.extend(b'\x00' * (-len(out) % SECTOR))
    return bytes(out)


def _path_table(root_extent, little):
    return (
        bytes((1, 0))
        + struct.pack('<I' if little else '>I', root_extent)
        + struct.pack('<H' if little else '>H', 1)
        + b'\x00\x00'
    )


def _text(value, size, joliet):
    if joliet:
        return (value.encode('utf-16-be') + b'\x00 ' * size)[:size]
    return value.encode('ascii').ljust(size, b' ')


def _descriptor(kind, joliet, sectors, root_record, path_sizes, path_l, path_m):
    out = bytearray(SECTOR)
    out[0:7] = bytes((kind,)) + b'CD001\x01'
    out[8:40] = _text('', 32, joliet)
    out[40:72] = _text(LABEL, 32, joliet)
    out[80:88] = _both32(sectors)
    if joliet:
        out[88:91] = b'%/E'  # UCS-2 level 3
    out[120:124] = _both16(1)
    out[124:128] = _both16(1)
    out[128:132] = _both16(SECTOR)
    out[132:140] = _both32(path_sizes)
    out[140:144] = struct.pack('<I', path_l)
    out[148:152] = struct.pack('>I', path_m)
    out[156:190] = root_record
    for start, size, value in ((190, 128, ''), (318, 128, ''), (446, 128, ''), (574, 128, _APPLICATION)):
        out[start : start + size] = _text(value, size, joliet)
    for start in (702, 739, 776):
        out[start : start + 37] = _text('', 37, joliet)
    out[813:830] = _VD_DATE
    out[830:847] = _VD_DATE
    out[847:864] = _NO_DATE
    out[864:881] = _NO_DATE
    out[881] = 1
    return bytes(out)


def build_iso(files):
    """``files`` ({name: bytes}, a flat directory) as an ISO 9660 image with Joliet and Rock
    Ridge (1.09: SP, RR, PX, NM, CE + ER) names and the volume label ``cidata``. Deterministic:
    the same files give the same bytes."""
    names = sorted(files)
    iso_names = {name: _iso_name(name) for name in names}
    if len(set(iso_names.values())) != len(names):
        raise ValueError('file names that differ only beyond the ISO 9660 8.3 name: %s' % ', '.join(names))
    # sectors: 16 PVD, 17 Joliet SVD, 18 terminator, 19-22 path tables (ISO L/M, Joliet L/M),
    # then the ISO root directory, the Rock Ridge continuation area, the Joliet root directory and
    # one extent per file (an empty file too: two files never share an extent)
    iso_root = 23

    def iso_records(root_sectors, ce_sector, extents):
        dot_su = _susp(b'SP', b'\xbe\xef\x00') + _susp(b'RR', b'\x01') + _px(0o40555, 2)
        dot_su += _susp(b'CE', _both32(ce_sector) + _both32(0) + _both32(len(_er())))
        records = [
            _record(b'\x00', iso_root, root_sectors * SECTOR, True, dot_su),
            _record(b'\x01', iso_root, root_sectors * SECTOR, True, _susp(b'RR', b'\x01') + _px(0o40555, 2)),
        ]
        for name in sorted(names, key=lambda n: iso_names[n]):
            su = _susp(b'RR', b'\x09') + _px(0o100444, 1) + _susp(b'NM', b'\x00' + name.encode('utf-8'))
            records.append(_record(iso_names[name].encode('ascii'), extents[name], len(files[name]), False, su))
        return records

    def joliet_records(root, root_sectors, extents):
        records = [
            _record(b'\x00', root, root_sectors * SECTOR, True),
            _record(b'\x01', root, root_sectors * SECTOR, True),
        ]
        for name in sorted(names, key=lambda n: n.encode('utf-16-be')):
            records.append(_record(name.encode('utf-16-be'), extents[name], len(files[name]), False))
        return records

    # the directory sizes do not depend on the extents: lay them out once with placeholders
    placeholder = dict.fromkeys(names, 0)
    iso_sectors = len(_directory(iso_records(1, 0, placeholder))) // SECTOR
    ce_sector = iso_root + iso_sectors
    joliet_root = ce_sector + 1
    joliet_sectors = len(_directory(joliet_records(joliet_root, 1, placeholder))) // SECTOR
    extents, next_sector = {}, joliet_root + joliet_sectors
    for name in names:
        extents[name] = next_sector
        next_sector += max(1, -(-len(files[name]) // SECTOR))
    total = next_sector
    iso_dir = _directory(iso_records(iso_sectors, ce_sector, extents))
    joliet_dir = _directory(joliet_records(joliet_root, joliet_sectors, extents))
    image = bytearray(16 * SECTOR)
    pvd_root = _record(b'\x00', iso_root, iso_sectors * SECTOR, True)
    svd_root = _record(b'\x00', joliet_root, joliet_sectors * SECTOR, True)
    image += _descriptor(1, False, total, pvd_root, 10, 19, 20)
    image += _descriptor(2, True, total, svd_root, 10, 21, 22)
    image += (b'\xffCD001\x01').ljust(SECTOR, b'\x00')
    for root, little in ((iso_root, True), (iso_root, False), (joliet_root, True), (joliet_root, False)):
        image += _path_table(root, little).ljust(SECTOR, b'\x00')
    image += iso_dir
    image += _er().ljust(SECTOR, b'\x00')
    image += joliet_dir
    for name in names:
        data = files[name]
        image += data + b'\x00' * (max(1, -(-len(data) // SECTOR)) * SECTOR - len(data))
    return bytes(image)


def _er():
    return (
        b'ER'
        + bytes((8 + len(_ER_ID) + len(_ER_DES) + len(_ER_SRC), 1, len(_ER_ID), len(_ER_DES), len(_ER_SRC), 1))
        + _ER_ID
        + _ER_DES
        + _ER_SRC
    )


def read_iso(data):
    """The files of the root directory of ``data`` (an image :func:`build_iso` wrote) by their
    Joliet names; None when ``data`` is no such image."""
    try:
        if data[16 * SECTOR + 1 : 16 * SECTOR + 6] != b'CD001':
            return None
        for index in range(17, 32):
            vd = data[index * SECTOR : (index + 1) * SECTOR]
            if vd[0] == 255 or vd[1:6] != b'CD001':
                return None
            if vd[0] == 2 and vd[88:91] in (b'%/@', b'%/C', b'%/E'):
                break
        else:
            return None
        root = vd[156:190]
        extent, size = struct.unpack('<I', root[2:6])[0], struct.unpack('<I', root[10:14])[0]
        directory = data[extent * SECTOR : extent * SECTOR + size]
        files, offset = {}, 0
        while offset < len(directory):
            length = directory[offset]
            if length == 0:
                offset = (offset // SECTOR + 1) * SECTOR
                continue
            record = directory[offset : offset + length]
            name_len = record[32]
            identifier = record[33 : 33 + name_len]
            if identifier not in (b'\x00', b'\x01') and not record[25] & 2:
                start = struct.unpack('<I', record[2:6])[0] * SECTOR
                files[identifier.decode('utf-16-be').split(';')[0]] = bytes(
                    data[start : start + struct.unpack('<I', record[10:14])[0]]
                )
            offset += length
        return files
    except (IndexError, UnicodeDecodeError, struct.error):
        return None
