# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NoCloud config drive: contents, the ISO reader, and the step with the real genisoimage
(images are also read back with isoinfo and blkid, independent of our own reader)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.bootflow.cloud.plugins.module_utils.common import rules
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host import config_drive as cd
from ansible_collections.bootflow.cloud.plugins.module_utils.host import guest_files

UUID = "0b6c1f0e-8f6e-4e43-9d55-0e1c7f5b2a11"
MAC = "fa:16:3e:12:34:56"
GENISOIMAGE = shutil.which("genisoimage")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPQl8U+WjAOElIOvqIDO9iM+lrtsx/jpSnybsUo/Y569 me@laptop"
KEY2 = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= \"quoted\" back\\slash ünï"


def run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


# ---- contents


@pytest.mark.parametrize("name, want", [
    ("web1", "web1"),
    ("My_VM.01", "my-vm-01"),
    ("  Web  Server 1 ", "web-server-1"),
    ("Ünïcödé Nàme", "unicode-name"),
    ("a;b|c$(reboot)", "abcreboot"),
    ("--x--", "x"),
    ("a" * 100, "a" * 63),
    ("a" * 62 + "-b", "a" * 62),
    ("日本語", ""),
    ("", ""),
    (None, ""),
])
def test_sanitize_hostname(name, want):
    got = cd.sanitize_hostname(name)
    assert got == want
    assert len(got) <= 63 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in got)


def test_pick_hostname_falls_back_to_the_ip_then_the_uuid():
    ports = [dict(mac=MAC, ip="10.99.0.5")]
    assert cd.pick_hostname(None, "Web 1", ports, UUID) == "web-1"
    assert cd.pick_hostname(None, "日本語", ports, UUID) == "host-10-99-0-5"
    assert cd.pick_hostname(None, None, [], UUID) == "host-0b6c1f0e"
    assert cd.pick_hostname("DB-2", "Web 1", ports, UUID) == "db-2"
    for bad in ("a.b", "-x", "x" * 64, "a_b"):
        with pytest.raises(cd.ConfigDriveError, match="invalid hostname"):
            cd.pick_hostname(bad, "web", ports, UUID)


def test_files():
    ports = cd.normalize_ports([dict(mac="FA:16:3E:12:34:56", ip="10.99.0.5", id="p1"),
                                dict(mac="fa:16:3e:00:00:02")])
    files = cd.drive_files(UUID, "web-1", None, ports)
    assert files["meta-data"] == ("instance-id: %s\nlocal-hostname: web-1\n" % UUID).encode()
    assert files["user-data"] == b"#cloud-config\n{}\n"
    assert files["network-config"].decode() == (
        'version: 2\nethernets:\n'
        '  eth0:\n    match:\n      macaddress: "fa:16:3e:12:34:56"\n    dhcp4: true\n'
        '  eth1:\n    match:\n      macaddress: "fa:16:3e:00:00:02"\n    dhcp4: true\n')
    assert cd.drive_files(UUID, "h", "", [])["user-data"] == b"#cloud-config\n{}\n"
    assert cd.drive_files(UUID, "h", "#!/bin/sh\necho hi ünï\n", [])["user-data"] == "#!/bin/sh\necho hi ünï\n".encode()
    assert cd.drive_files(UUID, "h", None, [])["network-config"] == b"version: 2\nethernets: {}\n"


@pytest.mark.parametrize("ports, msg", [
    ([dict(mac="nope")], "invalid MAC"),
    ([dict(mac=MAC), dict(mac=MAC.upper())], "given for two ports"),
    ([dict(mac=MAC, ip="10.99.0.300")], "not an IP"),
    (["x"], "must be a dict"),
])
def test_bad_ports(ports, msg):
    with pytest.raises(BootflowError, match=msg):   # ConfigDriveError, or InvalidRequest for the MAC
        cd.normalize_ports(ports)


# ---- the ISO reader


def _iso(tmp_path, *opts):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "meta-data").write_text("instance-id: x\n")
    (src / "network-config").write_text("version: 2\n")
    (src / "user-data").write_bytes(b"\0\1binary" * 1000)
    out = str(tmp_path / ("img%s.iso" % "".join(opts)))
    rc, _o, err = run([GENISOIMAGE, "-o", out, "-V", "cidata", "-quiet", "-input-charset", "utf-8", *opts,
                       str(src / "meta-data"), str(src / "network-config"), str(src / "user-data")])
    assert rc == 0, err
    return out


@pytest.mark.parametrize("opts", [("-J", "-r"), ("-r",), ("-J",)])
def test_read_iso_joliet_rock_ridge(tmp_path, opts):
    label, files = cd.read_iso(_iso(tmp_path, *opts))
    assert label == "cidata"
    assert files == {"meta-data": b"instance-id: x\n", "network-config": b"version: 2\n",
                     "user-data": b"\0\1binary" * 1000}


def test_read_iso_plain_iso9660_names(tmp_path):
    label, files = cd.read_iso(_iso(tmp_path))   # neither Joliet nor Rock Ridge: 8.3 names
    assert label == "cidata" and sorted(files) == ["meta_dat", "network_", "user_dat"]


def test_read_iso_refuses_what_is_not_an_image(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 100000)
    with pytest.raises(cd.IsoError):
        cd.read_iso(str(junk))
    short = tmp_path / "short"
    short.write_bytes(b"x" * 100)
    with pytest.raises(cd.IsoError):
        cd.read_iso(str(short))
    with pytest.raises(cd.IsoError, match="larger"):
        cd.read_iso(_iso(tmp_path, "-J"), max_size=1000)


# ---- the step


@pytest.fixture
def inst(tmp_path):
    base = tmp_path / "instances"
    (base / UUID).mkdir(parents=True)
    return dict(base=str(base), path=str(base / UUID / "disk.config"))


def params(inst, **kw):
    p = dict(instance_uuid=UUID, name="Web_1", hostname=None, user_data=None,
             ports=[dict(mac=MAC, ip="10.99.0.5", id="p1")], instances_path=inst["base"], state="present")
    p.update(kw)
    return p


def isoinfo(path, name):
    return subprocess.run(["isoinfo", "-J", "-i", path, "-x", "/" + name], stdout=subprocess.PIPE,
                          check=True).stdout


def test_build_then_idempotent_then_rebuilt_on_change(inst):
    chk = cd.config_drive_step(params(inst), check_mode=True, run=run)
    assert chk["changed"] and not os.path.exists(inst["path"])

    r = cd.config_drive_step(params(inst), run=run)
    assert r["changed"] and r["path"] == inst["path"] and r["hostname"] == "web-1"
    assert r["files"] == ["meta-data", "network-config", "user-data"]
    # read back by other tools than ours: label and files
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", inst["path"]], stdout=subprocess.PIPE,
                           text=True, check=False).stdout.strip()
    assert label == "cidata"
    assert isoinfo(inst["path"], "meta-data") == ("instance-id: %s\nlocal-hostname: web-1\n" % UUID).encode()
    assert isoinfo(inst["path"], "user-data") == b"#cloud-config\n{}\n"
    assert b'macaddress: "fa:16:3e:12:34:56"' in isoinfo(inst["path"], "network-config")
    # the drive holds the user data: 0640 in a 0750 directory, QEMU's group, nothing for "other"
    assert os.stat(inst["path"]).st_mode & 0o777 == 0o640
    assert os.stat(os.path.dirname(inst["path"])).st_mode & 0o777 == 0o750
    if guest_files.qemu_gid() is not None:
        assert os.stat(inst["path"]).st_gid == guest_files.qemu_gid()
    assert sorted(os.listdir(os.path.dirname(inst["path"]))) == ["disk.config"]   # no temporary files left

    st = os.stat(inst["path"])
    os.utime(inst["path"], (1, 1))     # the mtime says nothing: content is compared
    again = cd.config_drive_step(params(inst), run=run)
    assert not again["changed"] and os.stat(inst["path"]).st_ino == st.st_ino

    new = cd.config_drive_step(params(inst, user_data="#cloud-config\nruncmd: [true]\n"), run=run, check_mode=True)
    assert new["changed"] and os.stat(inst["path"]).st_ino == st.st_ino
    assert "(17 bytes, sha256" in new["diff"]["before"] and "runcmd" not in new["diff"]["after"]
    new = cd.config_drive_step(params(inst, user_data="#cloud-config\nruncmd: [true]\n"), run=run)
    assert new["changed"] and os.stat(inst["path"]).st_ino != st.st_ino
    assert isoinfo(inst["path"], "user-data") == b"#cloud-config\nruncmd: [true]\n"
    assert not cd.config_drive_step(params(inst, user_data="#cloud-config\nruncmd: [true]\n"), run=run)["changed"]
    assert cd.config_drive_step(params(inst, user_data="#cloud-config\nruncmd: [true]\n", name="other"),
                                run=run)["changed"]


def test_unreadable_drive_is_rebuilt_and_absent_removes_it(inst):
    with open(inst["path"], "wb") as f:
        f.write(b"not an iso")
    r = cd.config_drive_step(params(inst), run=run)
    assert r["changed"] and r["diff"]["before"] == "(unreadable image)\n"
    assert cd.read_iso(inst["path"])[0] == "cidata"
    assert cd.config_drive_step(params(inst, state="absent"), run=run, check_mode=True)["changed"]
    assert os.path.exists(inst["path"])
    assert cd.config_drive_step(params(inst, state="absent"), run=run)["changed"]
    assert not os.path.exists(inst["path"])
    assert not cd.config_drive_step(params(inst, state="absent"), run=run)["changed"]


def test_instance_dir_is_made_but_instances_path_must_exist(tmp_path):
    base = tmp_path / "instances"
    with pytest.raises(cd.ConfigDriveError, match="instances_path .* does not exist"):
        cd.config_drive_step(params(dict(base=str(base))), run=run)
    base.mkdir()
    r = cd.config_drive_step(params(dict(base=str(base))), run=run)
    assert r["changed"] and os.path.isfile(str(base / UUID / "disk.config"))


def test_genisoimage_failure_leaves_the_old_drive(inst, monkeypatch):
    cd.config_drive_step(params(inst), run=run)
    before = open(inst["path"], "rb").read()

    def broken(argv):
        return 1, "", "genisoimage: No space left on device"

    with pytest.raises(cd.ConfigDriveError, match="genisoimage failed .*No space left") as e:
        cd.config_drive_step(params(inst, name="changed"), run=broken)
    assert e.value.details["cmd"][0] == GENISOIMAGE
    assert open(inst["path"], "rb").read() == before
    assert sorted(os.listdir(os.path.dirname(inst["path"]))) == ["disk.config"]

    def wrong_content(argv):   # another label, and only the last file
        i = argv.index("-volid")
        return run(argv[:i] + ["-volid", "other"] + argv[i + 2:-3] + argv[-1:])

    with pytest.raises(cd.ConfigDriveError, match="does not hold the expected files"):
        cd.config_drive_step(params(inst, name="changed"), run=wrong_content)
    assert open(inst["path"], "rb").read() == before
    assert sorted(os.listdir(os.path.dirname(inst["path"]))) == ["disk.config"]

    monkeypatch.setattr(cd, "find_bin", lambda name: None)
    with pytest.raises(cd.ConfigDriveError, match="genisoimage is not installed"):
        cd.config_drive_step(params(inst, name="changed"), run=run)


@pytest.mark.parametrize("kw, msg", [
    (dict(instance_uuid="../../etc"), "not a UUID"),
    (dict(instances_path="relative"), "absolute"),
    (dict(hostname="bad_name"), "invalid hostname"),
    (dict(ports=[dict(mac="x")]), "invalid MAC"),
    (dict(user_data="x" * 70000), "at most 65535"),
    (dict(user_data="x" * 49150), r"49150 bytes, 65536 once base64-encoded"),
])
def test_input_validation(inst, kw, msg):
    with pytest.raises(BootflowError, match=msg):
        cd.config_drive_step(params(inst, **kw), run=run, check_mode=True)
    assert not os.path.exists(inst["path"])


def test_a_directory_in_the_way_is_an_error(inst):
    os.mkdir(inst["path"])
    with pytest.raises(cd.ConfigDriveError, match="not a regular file"):
        cd.config_drive_step(params(inst), run=run)


def test_user_data_limit_counts_base64_as_nova_does():
    # 49149 bytes encode to 65532 base64 bytes (allowed), 49150 to 65536 (one over Nova's 65535)
    assert rules.MAX_USER_DATA == 49149
    assert rules.user_data_problem(b"x" * 49149) is None
    assert rules.user_data_problem("é" * 24574) is None          # counted in UTF-8 bytes: 49148
    assert "49150 bytes, 65536 once base64-encoded" in rules.user_data_problem("x" * 49150)
    assert rules.user_data_problem("é" * 24575).startswith("user_data is 49150 bytes")   # 49150 UTF-8 bytes


# ---- public keys (a key pair's key, the instance's key_name)


def test_meta_data_lists_the_public_keys_as_cloud_init_reads_them():
    plain = "instance-id: %s\nlocal-hostname: web-1\n" % UUID
    assert cd.render_meta_data(UUID, "web-1") == plain
    assert cd.render_meta_data(UUID, "web-1", []) == plain       # no keys: no public-keys at all
    meta = cd.render_meta_data(UUID, "web-1", [KEY, KEY2])
    assert meta == plain + 'public-keys:\n  - "%s"\n  - "%s"\n' % (
        KEY, 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= \\"quoted\\" back\\\\slash '
             '\\u00fcn\\u00ef')
    assert yaml.safe_load(meta) == {"instance-id": UUID, "local-hostname": "web-1", "public-keys": [KEY, KEY2]}
    # drive_files: the same, keys given with blanks around them as read from a file
    files = cd.drive_files(UUID, "web-1", None, [], ["  %s\n" % KEY])
    assert files["meta-data"] == (plain + 'public-keys:\n  - "%s"\n' % KEY).encode()
    assert cd.drive_files(UUID, "web-1", None, [])["meta-data"] == plain.encode()


@pytest.mark.parametrize("keys, msg", [
    ([""], r"public_keys\[0\] must be a non-empty string"),
    ([KEY, "  "], r"public_keys\[1\] must be a non-empty string"),
    ([7], "must be a non-empty string"),
    ([KEY + "\n" + KEY], r"public_keys\[0\] must be one line"),
    ([KEY + "\rx"], "must be one line"),
])
def test_bad_public_keys(inst, keys, msg):
    with pytest.raises(cd.ConfigDriveError, match=msg):
        cd.config_drive_step(params(inst, public_keys=keys), run=run, check_mode=True)
    assert not os.path.exists(inst["path"])


def test_the_public_keys_are_part_of_the_drives_content(inst):
    r = cd.config_drive_step(params(inst, public_keys=[KEY]), run=run)
    want = ("instance-id: %s\nlocal-hostname: web-1\npublic-keys:\n  - \"%s\"\n" % (UUID, KEY)).encode()
    assert r["changed"] and r["meta_data"] == want.decode()
    assert isoinfo(inst["path"], "meta-data") == want                 # read back by isoinfo ...
    label, files = cd.read_iso(inst["path"])                          # ... and by our reader
    assert label == "cidata" and yaml.safe_load(files["meta-data"])["public-keys"] == [KEY]
    st = os.stat(inst["path"])
    assert not cd.config_drive_step(params(inst, public_keys=[KEY]), run=run)["changed"]
    assert os.stat(inst["path"]).st_ino == st.st_ino
    # other keys: the drive is rebuilt (check mode says so and leaves it)
    chk = cd.config_drive_step(params(inst, public_keys=[KEY, KEY2]), run=run, check_mode=True)
    assert chk["changed"] and os.stat(inst["path"]).st_ino == st.st_ino and KEY2.split()[1] in chk["diff"]["after"]
    assert cd.config_drive_step(params(inst, public_keys=[KEY, KEY2]), run=run)["changed"]
    assert yaml.safe_load(isoinfo(inst["path"], "meta-data"))["public-keys"] == [KEY, KEY2]
    # no keys any more: rebuilt without public-keys, the drive a keyless instance always had
    assert cd.config_drive_step(params(inst, public_keys=[]), run=run)["changed"]
    assert isoinfo(inst["path"], "meta-data") == ("instance-id: %s\nlocal-hostname: web-1\n" % UUID).encode()
    assert not cd.config_drive_step(params(inst), run=run)["changed"]


def test_an_existing_world_readable_config_drive_is_tightened(inst):
    """Issue 16: a drive written before (0644 in a 0755 directory) is made private on the next run."""
    r = cd.config_drive_step(params(inst), run=run)
    os.chmod(r["path"], 0o644)
    os.chmod(os.path.dirname(r["path"]), 0o755)
    again = cd.config_drive_step(params(inst), run=run)
    assert again["changed"] and os.stat(r["path"]).st_mode & 0o777 == 0o640
    assert os.stat(os.path.dirname(r["path"])).st_mode & 0o777 == 0o750
    assert not cd.config_drive_step(params(inst), run=run)["changed"]
