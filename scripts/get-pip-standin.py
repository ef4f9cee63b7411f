# SPDX-License-Identifier: GPL-3.0-or-later
"""Offline stand-in for the get-pip.py script that ``ansible-test`` downloads.

``ansible-test sanity`` creates one virtual environment per sanity test (``python -m venv
--without-pip``) and bootstraps pip in it by running a get-pip script it downloads from a host that
is unreachable here. It looks for a cached copy first, at ``~/.ansible/test/cache/get_pip_<ver>.py``
(``<ver>`` is the pip version ansible-test pins, dots replaced by underscores). ``make sanity``
(scripts/sanity.sh) copies this template there.

Like the real script it is run with pip's install arguments, for example
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``. It puts pip into the running
interpreter's environment with ``python -m ensurepip`` (pip's wheel ships with Python / Debian's
python3-pip-whl) and then ``pip install``s the requested packages from the configured index.
"""

from __future__ import annotations

import subprocess
import sys

# get-pip.py options that are not pip install options
_GET_PIP_ONLY = {'--no-setuptools', '--no-wheel'}


def main(argv):
    args = [arg for arg in argv if arg not in _GET_PIP_ONLY]
    subprocess.run([sys.executable, '-m', 'ensurepip', '--default-pip'], check=True, stdout=subprocess.DEVNULL)
    packages = [arg for arg in args if not arg.startswith('-')]
    if packages:
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet'] + args, check=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
