# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 16 on the host side: no validator takes a trailing newline (finding 9), the request_flow callback
prints no raw control character (finding 11), guest files are not world-readable (finding 12)."""

from __future__ import annotations

import grp
import os

import pytest

from ansible_collections.bootflow.cloud.plugins.callback import request_flow
from ansible_collections.bootflow.cloud.plugins.module_utils.common import rules
from ansible_collections.bootflow.cloud.plugins.module_utils.host import config_drive as cd
from ansible_collections.bootflow.cloud.plugins.module_utils.host import guest_files
from ansible_collections.bootflow.cloud.plugins.module_utils.host import image_cache as im
from ansible_collections.bootflow.cloud.plugins.module_utils.host import virt_xml as vx


@pytest.mark.parametrize("check,good", [
    (vx.check_volume_name, "volume-1"), (vx.check_pool_name, "bootflow"), (vx.tap_name, "0b2c6f4e"),
])
def test_virt_name_checks_refuse_a_trailing_newline(check, good):
    check(good)
    with pytest.raises(vx.VirtError):
        check(good + "\n")


def test_regexes_take_no_trailing_newline():
    assert vx.DEVICE_RE.fullmatch("vdb") and not vx.DEVICE_RE.fullmatch("vdb\n")
    assert not rules.MAC_RE.fullmatch("52:54:00:12:34:56\n")
    assert not im._HEX.fullmatch("abc\n")   # pylint: disable=protected-access


@pytest.mark.parametrize("hostname", ["vm1\n", "vm1\nfa:16:3e:00:00:01,10.0.0.99", "vm1\u202e"])
def test_config_drive_hostname_refuses_a_newline(hostname):
    with pytest.raises(cd.ConfigDriveError, match="invalid hostname"):
        cd.pick_hostname(hostname)
    assert cd.pick_hostname("vm1") == "vm1"


def test_request_flow_escapes_control_and_format_characters():
    assert request_flow.safe_text("ok name") == "ok name"
    assert request_flow.safe_text("a\x9b31mb\u202ec\u200bd\ne\x85") == "a\\x9b31mb\\u202ec\\u200bd\\ne\\x85"
    assert request_flow.safe_text(42) == "42"


def test_the_callback_table_holds_no_raw_control_character():
    lines = []

    class Display:
        def banner(self, text):
            lines.append(text)

        def display(self, text):
            lines.append(text)

    cb = request_flow.CallbackModule()
    cb._display = Display()   # pylint: disable=protected-access
    cb._rows = [{"instance": "evil\x1b[2J\u202egpj.exe", "seed_steps": "3-7", "service": "nova-api\x9b",   # noqa
                 "action": "create", "host": "hv\n1", "from": "", "to": "building", "changed": True, "ms": 5}]
    cb.v2_playbook_on_stats(None)
    text = "\n".join(lines)
    assert not any(rules.forbidden_char(line) for line in lines), lines
    assert "evil\\x1b[2J\\u202egpj.exe" in text and "nova-api\\x9b" in text and "hv\\n1" in text


def test_qemu_group_from_qemu_conf(tmp_path):
    conf = tmp_path / "qemu.conf"
    conf.write_text('#group = "nope"\nuser = "libvirt-qemu"\ngroup = "+4242"   # comment\n')
    assert guest_files.qemu_conf_ids(str(conf)) == {"user": "libvirt-qemu", "group": "+4242"}
    assert guest_files.qemu_gid(str(conf)) == 4242
    conf.write_text("# nothing set\n")
    want = next((g.gr_gid for g in map(_group, guest_files.DEFAULT_GROUPS) if g is not None), None)
    assert guest_files.qemu_gid(str(conf)) == want


def _group(name):
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def test_secure_tightens_an_older_world_readable_file(tmp_path):
    f = tmp_path / "disk.config"
    f.write_text("user data")
    f.chmod(0o644)
    assert guest_files.secure_guest_file(str(f), gid=os.getgid()) is True
    assert os.stat(f).st_mode & 0o777 == 0o640
    assert guest_files.secure_guest_file(str(f), gid=os.getgid()) is False
    d = tmp_path / "inst"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    assert guest_files.secure_instance_dir(str(d), gid=os.getgid()) and os.stat(d).st_mode & 0o777 == 0o750
