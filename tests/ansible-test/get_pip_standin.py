#!/usr/bin/env python
"""Offline stand-in for ansible-test's ``get-pip-<version>.py`` download.

``ansible-test ... --venv`` creates each test venv ``--without-pip`` and bootstraps pip by running
``get-pip-<version>.py`` from ci-files.testing.ansible.com, which this CI cannot reach. It first
looks for ``~/.ansible/test/cache/get_pip_<version>.py`` (dots as underscores), and that is where
scripts/setup.sh installs this file when nothing is there yet (a real get-pip is left alone).

ansible-test runs it as ``__main__`` (through its quiet_pip wrapper) in the new venv's Python:

    python get_pip_X_Y.py --disable-pip-version-check pip==X.Y --no-setuptools --no-wheel

What it does, like get-pip: make pip importable (``ensurepip``, from the wheel bundled with
CPython, no network), then ``python -m pip install <arguments>`` through the machine's normal
index configuration, so the exact pip version ansible-test asked for is installed.

Gotcha: ``ensurepip.bootstrap()`` blanks pip's configuration in ``os.environ`` (it deletes every
``PIP_*`` variable and sets ``PIP_CONFIG_FILE`` to devnull) so the bundled install is isolated.
The second pip call must therefore get the environment saved *before* ensurepip, or pip loses
this machine's index / find-links / certificate settings (CERTIFICATE_VERIFY_FAILED).

Exit status: pip's status (0 on success); 1 if pip cannot be bootstrapped.
"""

import os
import re
import subprocess
import sys

MARKER = "bootflow get-pip stand-in"  # scripts/setup.sh looks for this to refresh its own copy

# get-pip's own options; everything else is passed to `pip install` unchanged
GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel", "--no-pip")


def pip_importable(env):
    """True when `python -m pip` already works in this interpreter."""
    return subprocess.call([sys.executable, "-m", "pip", "--version"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def main(argv):
    env = dict(os.environ)  # saved BEFORE ensurepip touches os.environ (see module docstring)

    args = [a for a in argv if a not in GET_PIP_ONLY_OPTIONS]
    # get-pip installs pip when no requirement for it is given; so do we
    names = [re.split(r"[<>=!~;\[ ]", a, 1)[0].lower() for a in args if not a.startswith("-")]
    if "pip" not in names:
        args.append("pip")

    if not pip_importable(env):
        try:
            import ensurepip
        except ImportError:
            sys.stderr.write("%s: this Python has no ensurepip (Debian: apt-get install "
                             "python3-venv), cannot bootstrap pip offline\n" % MARKER)
            return 1
        ensurepip.bootstrap(default_pip=True)
        if not pip_importable(env):
            sys.stderr.write("%s: ensurepip ran but pip is still not importable\n" % MARKER)
            return 1

    return subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
