# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The operator's settings: what nova.conf, glance-api.conf and keystone.conf hold in OpenStack.

PRIVATE to the collection: may change at any time. Controller side only.

Two sources, both owned by whoever runs the controller (never by a task's arguments):

- the controller's environment (``BOOTFLOW_*``, ``OS_*``): backends and endpoints (``backend``);
- the operator's configuration file, YAML: ``$BOOTFLOW_CONFIG``, else ``bootflow.yml`` in the state dir
  the environment names (``$BOOTFLOW_STATE_DIR``, else ``~/.bootflow``). One mapping per section
  (``SCHEMA``); a missing file means every default. The file must be a regular file that neither the
  group nor others may write, owned by the controller's user or root: a file anyone could change would
  make its settings anyone's.

A task option that overrides an operator setting is honoured for admins only
(``StepContext.operator_setting``; policy rule ``config:override``).
"""

from __future__ import annotations

import os
import stat

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest

CONFIG_ENV = "BOOTFLOW_CONFIG"
CONFIG_NAME = "bootflow.yml"

# every setting the file may hold, by section (a key not listed here is a typo and refused)
SCHEMA = {
    # nova.conf [filter_scheduler] / [scheduler]
    "scheduler": ("enabled_filters", "hosts", "weight_multipliers", "host_subset_size", "max_attempts",
                  "service_down_time", "max_placement_results"),
    # nova.conf [DEFAULT] shutdown_timeout, [libvirt] wait_soft_reboot_seconds: the power actions on the hosts;
    # [DEFAULT] resize_confirm_window: when a resize waiting for its confirm is confirmed by hypervisors.yml
    "compute": ("shutdown_timeout", "wait_soft_reboot_seconds", "resize_confirm_window"),
    # keystone.conf [token]
    "identity": ("token_expiration", "max_token_expiration"),
    # glance-api.conf: image_size_cap, the upload directory, [task]/[import_filtering_opts]
    "image": ("upload_dir", "image_size_cap", "url_allowed_schemes", "url_allowed_ports", "url_allowed_hosts",
              "url_allow_private"),
}


def backend(option, value, env, choices, default="local"):
    """The operator's backend for ``option``: the environment variable ``env``, else ``default``. InvalidRequest
    when it is not one of ``choices`` (saying where a bad value came from). A task's ``value`` may repeat it; a
    task naming another backend is refused (AuthError): where claims, images or identities live is the
    operator's choice, as in nova.conf and glance-api.conf."""
    chosen = os.environ.get(env) or default
    if chosen not in choices:
        raise InvalidRequest("%s must be one of %s, got %r (from the %s environment variable)."
                             % (option, ", ".join(choices), chosen, env))
    if value and value != chosen:
        if value not in choices:
            raise InvalidRequest("%s must be one of %s, got %r." % (option, ", ".join(choices), value))
        raise AuthError("%s %r differs from the operator's (%s, from the controller's %s environment variable, else %s): "
                        "the backend is an operator setting, never a task's." % (option, value, chosen, env, default))
    return chosen


def config_path():
    """Where the operator's file is (it need not exist)."""
    if os.environ.get(CONFIG_ENV):
        return os.path.expanduser(os.environ[CONFIG_ENV])
    state_dir = os.path.expanduser(os.environ.get("BOOTFLOW_STATE_DIR") or "~/.bootflow")
    return os.path.join(state_dir, CONFIG_NAME)


_cache = {}


def load(path=None):
    """The operator's settings as {section: {key: value}} (every section present, maybe empty).
    Raises InvalidRequest for a file that is unsafe, unreadable, not YAML or names an unknown setting."""
    path = path or config_path()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {section: {} for section in SCHEMA}
    except OSError as exc:
        raise InvalidRequest("cannot read the operator configuration %s: %s" % (path, exc.strerror)) from None
    key = (path, st.st_mtime_ns, st.st_size, st.st_ino)
    if key in _cache:
        return _cache[key]
    if not stat.S_ISREG(st.st_mode):
        raise InvalidRequest("the operator configuration %s is not a regular file." % path)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InvalidRequest("the operator configuration %s is writable by its group or others (mode %04o): "
                             "chmod go-w it." % (path, stat.S_IMODE(st.st_mode)))
    if st.st_uid not in (0, os.getuid()):
        raise InvalidRequest("the operator configuration %s belongs to uid %d, neither this user (%d) nor root."
                             % (path, st.st_uid, os.getuid()))
    data = _parse(path)
    out = {section: {} for section in SCHEMA}
    for section, values in data.items():
        if section not in SCHEMA:
            raise InvalidRequest("the operator configuration %s: unknown section %r (known: %s)."
                                 % (path, section, ", ".join(sorted(SCHEMA))))
        if values is None:
            continue
        if not isinstance(values, dict):
            raise InvalidRequest("the operator configuration %s: section %r must be a mapping." % (path, section))
        unknown = sorted(set(values) - set(SCHEMA[section]))
        if unknown:
            raise InvalidRequest("the operator configuration %s: unknown setting(s) %s in section %r (known: %s)."
                                 % (path, ", ".join(map(str, unknown)), section, ", ".join(SCHEMA[section])))
        out[section] = dict(values)
    _cache.clear()
    _cache[key] = out
    return out


def _parse(path):
    try:
        import yaml
    except ImportError:
        raise InvalidRequest("reading the operator configuration %s needs PyYAML on the controller." % path) from None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise InvalidRequest("cannot read the operator configuration %s: %s" % (path, exc.strerror)) from None
    except yaml.YAMLError as exc:
        raise InvalidRequest("the operator configuration %s is not valid YAML: %s" % (path, exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidRequest("the operator configuration %s must be a mapping of sections." % path)
    return data


def get(section, key, default=None):
    """One operator setting, or ``default`` when the file does not set it."""
    if key not in SCHEMA[section]:
        raise KeyError("%s.%s is not an operator setting" % (section, key))
    value = load()[section].get(key)
    return default if value is None else value
