# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The step runners' pure parts: which spec a host step validates with, what reaches the host module,
which backend a setting names, and the layout's names."""

from __future__ import annotations

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils import settings, steps


class _Task:
    def __init__(self, args):
        self.args = args


def _host_step(module, args):
    cls = type("ActionModule", (steps.HostStep,), {"__module__": "ansible_collections.bootflow.cloud.plugins.action.%s" % module})
    step = cls.__new__(cls)   # no ActionBase.__init__: only the spec is looked at
    step._task = _Task(args)  # pylint: disable=protected-access
    return step


def test_a_host_step_validates_with_its_modules_spec():
    spec = _host_step("dhcp_lease", {"port_id": "p"}).argument_spec()
    assert spec["argument_spec"]["network_id"]["required"] is True
    assert spec["required_if"]


def test_with_a_token_required_options_are_left_to_the_db_and_the_host():
    spec = _host_step("dhcp_lease", {"port_id": "p", "auth_token": "t"}).argument_spec()
    assert set(spec) == {"argument_spec"}
    assert "required" not in spec["argument_spec"]["network_id"]
    # types, choices and defaults are still checked on the controller
    assert spec["argument_spec"]["state"]["choices"] == ["present", "absent", "leased"]
    assert spec["argument_spec"]["lease_time"]["default"] == 86400


def test_the_module_name_is_the_plugins_file_name():
    assert _host_step("volume_attach", {}).module_name() == "volume_attach"


def test_unset_options_do_not_reach_the_host_not_even_inside_sub_options():
    args = {"name": "d", "uuid": None, "disks": [{"path": "/x", "pool": None, "volume": None}], "interfaces": []}
    assert steps._without_unset(args) == {"name": "d", "disks": [{"path": "/x"}], "interfaces": []}  # pylint: disable=protected-access


def test_a_backend_is_the_operators_and_a_task_may_only_repeat_it(monkeypatch):
    monkeypatch.delenv("BOOTFLOW_X_BACKEND", raising=False)
    assert settings.backend("x_backend", None, "BOOTFLOW_X_BACKEND", ("local", "remote")) == "local"
    assert settings.backend("x_backend", "local", "BOOTFLOW_X_BACKEND", ("local", "remote")) == "local"
    with pytest.raises(BootflowError, match=r"x_backend 'remote' differs from the operator's \(local") as err:
        settings.backend("x_backend", "remote", "BOOTFLOW_X_BACKEND", ("local", "remote"))
    assert err.value.kind == "auth"
    monkeypatch.setenv("BOOTFLOW_X_BACKEND", "remote")
    assert settings.backend("x_backend", None, "BOOTFLOW_X_BACKEND", ("local", "remote")) == "remote"
    with pytest.raises(BootflowError, match=r"x_backend 'local' differs from the operator's \(remote"):
        settings.backend("x_backend", "local", "BOOTFLOW_X_BACKEND", ("local", "remote"))
    with pytest.raises(InvalidRequest, match=r"x_backend must be one of local, remote, got 'nope'\."):
        settings.backend("x_backend", "nope", "BOOTFLOW_X_BACKEND", ("local", "remote"))
    monkeypatch.setenv("BOOTFLOW_X_BACKEND", "nope")
    with pytest.raises(InvalidRequest, match=r"x_backend must be one of local, remote, got 'nope' \(from the "
                                             r"BOOTFLOW_X_BACKEND environment variable\)"):
        settings.backend("x_backend", None, "BOOTFLOW_X_BACKEND", ("local", "remote"))


def test_names_on_the_host():
    uuid = "1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11"
    assert layout.domain_name(uuid) == "bootflow-" + uuid
    assert layout.instance_of_domain(layout.domain_name(uuid)) == uuid
    assert layout.instance_of_domain("other") == "other"
    assert layout.console_log_path("/srv/i", uuid) == "/srv/i/%s/console.log" % uuid


def test_one_exception_root():
    assert issubclass(InvalidRequest, BootflowError) and issubclass(InvalidRequest, ValueError)
    err = BootflowError("no", device="vdb")
    assert (str(err), err.msg, err.details) == ("no", "no", {"device": "vdb"})


# --- the operator's configuration file ------------------------------------------------------------------

def _write_config(tmp_path, text, mode=0o600):
    path = tmp_path / "bootflow.yml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_operator_settings_come_from_the_file_the_environment_names(tmp_path, monkeypatch):
    path = _write_config(tmp_path, "scheduler:\n  enabled_filters: [ComputeFilter]\n  host_subset_size: 2\nimage: {}\n")
    monkeypatch.setenv("BOOTFLOW_CONFIG", str(path))
    assert settings.get("scheduler", "enabled_filters") == ["ComputeFilter"]
    assert settings.get("scheduler", "host_subset_size", 1) == 2
    assert settings.get("scheduler", "hosts", ["all"]) == ["all"]   # not set: the default
    with pytest.raises(KeyError):
        settings.get("scheduler", "no_such_setting")


def test_without_a_file_the_state_dirs_file_is_read_else_every_default(tmp_path, monkeypatch):
    monkeypatch.delenv("BOOTFLOW_CONFIG", raising=False)
    monkeypatch.setenv("BOOTFLOW_STATE_DIR", str(tmp_path))
    assert settings.config_path() == str(tmp_path / "bootflow.yml")
    assert settings.get("identity", "max_token_expiration", 86400) == 86400
    _write_config(tmp_path, "identity:\n  max_token_expiration: 600\n")
    assert settings.get("identity", "max_token_expiration", 86400) == 600


@pytest.mark.parametrize("text, mode, message", [
    ("scheduler: {}\n", 0o620, r"writable by its group or others \(mode 0620\)"),
    ("scheduler: {}\n", 0o602, r"writable by its group or others"),
    ("schedular: {}\n", 0o600, r"unknown section 'schedular'"),
    ("scheduler:\n  enabled_filter: []\n", 0o600, r"unknown setting\(s\) enabled_filter in section 'scheduler'"),
    ("scheduler: [1, 2]\n", 0o600, r"section 'scheduler' must be a mapping"),
    ("- a\n", 0o600, r"must be a mapping of sections"),
    ("scheduler: {\n", 0o600, r"is not valid YAML"),
])
def test_an_unsafe_or_wrong_operator_file_is_refused_naming_the_problem(tmp_path, monkeypatch, text, mode, message):
    monkeypatch.setenv("BOOTFLOW_CONFIG", str(_write_config(tmp_path, text, mode)))
    with pytest.raises(InvalidRequest, match=message):
        settings.get("scheduler", "hosts")


class _Auth:
    def __init__(self, *roles):
        self.roles = list(roles)
        self.user_name, self.user_id = "u", "uid"


def _ctx(args, given, auth):
    ctx = steps.StepContext.__new__(steps.StepContext)   # no action: only args, given and the caller matter
    ctx.args, ctx.given, ctx._auth = args, frozenset(given), auth   # pylint: disable=protected-access
    return ctx


def test_a_task_option_overrides_an_operator_setting_for_admins_only(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOTFLOW_CONFIG", str(_write_config(tmp_path, "scheduler:\n  hosts: [h1, h2]\n")))
    args = {"hosts": ["h9"]}
    assert _ctx(args, ["hosts"], _Auth("admin")).operator_setting("hosts", "scheduler") == ["h9"]
    # not given: the operator's value, whoever asks
    assert _ctx(args, [], _Auth("member")).operator_setting("hosts", "scheduler") == ["h1", "h2"]
    for roles in (("member",), ("reader",), ()):
        with pytest.raises(BootflowError, match=r"hosts is an operator setting .* only an admin may set it") as err:
            _ctx(args, ["hosts"], _Auth(*roles)).operator_setting("hosts", "scheduler")
        assert err.value.kind == "auth"


# --- the identity service is the operator's ---------------------------------------------------------------

def test_a_task_cannot_choose_the_identity_service_that_validates_its_token(monkeypatch):
    monkeypatch.delenv("BOOTFLOW_AUTH_BACKEND", raising=False)
    monkeypatch.setenv("OS_AUTH_URL", "http://127.0.0.1:5000")
    monkeypatch.delenv("OS_CLOUD", raising=False)
    assert _ctx({"auth_backend": "local"}, ["auth_backend"], None).auth_backend == "local"   # repeating it is fine
    with pytest.raises(BootflowError, match=r"auth_backend 'keystone' differs from the operator's identity service "
                                            r"\(local") as err:
        _ctx({"auth_backend": "keystone"}, ["auth_backend"], None).auth_backend   # pylint: disable=expression-not-assigned
    assert err.value.kind == "auth"
    monkeypatch.setenv("BOOTFLOW_AUTH_BACKEND", "keystone")
    same = _ctx({"auth_url": "http://127.0.0.1:5000/v3/"}, ["auth_url"], None)
    assert same.operator_auth_url() == "http://127.0.0.1:5000/v3/"
    with pytest.raises(BootflowError, match=r"auth_url http://127.0.0.1:6666/v3 is not the operator's Keystone "
                                            r"\(http://127.0.0.1:5000/v3"):
        _ctx({"auth_url": "http://127.0.0.1:6666/v3"}, ["auth_url"], None).operator_auth_url()
    monkeypatch.delenv("OS_AUTH_URL")
    with pytest.raises(BootflowError, match=r"\(none configured"):
        _ctx({"auth_url": "http://127.0.0.1:5000/v3"}, ["auth_url"], None).operator_auth_url()


def test_a_task_cannot_bring_its_own_key_repository_or_database(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOTFLOW_STATE_DIR", str(tmp_path / "operator"))
    monkeypatch.delenv("BOOTFLOW_DB_URL", raising=False)
    (tmp_path / "operator").mkdir()
    (tmp_path / "operator-link").symlink_to(tmp_path / "operator")
    assert _ctx({"state_dir": str(tmp_path / "operator-link")}, ["state_dir"], None).state_dir   # the same dir
    with pytest.raises(BootflowError, match=r"state_dir .*mine is not the operator's state dir") as err:
        _ctx({"state_dir": str(tmp_path / "mine")}, ["state_dir"], None).state_dir   # pylint: disable=expression-not-assigned
    assert err.value.kind == "auth"
    ctx = _ctx({"db_url": "sqlite:///%s" % (tmp_path / "mine.db")}, ["db_url"], None)
    ctx._db = None   # pylint: disable=protected-access
    with pytest.raises(BootflowError, match=r"db_url is not the operator's database"):
        ctx.db   # pylint: disable=pointless-statement
    assert not (tmp_path / "mine.db").exists() and not (tmp_path / "mine").exists()
