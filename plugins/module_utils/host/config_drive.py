# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""NoCloud config drive: metadata, user-data and network-config on an ISO 9660 image (stdlib only).

PRIVATE to the collection: may change at any time.

Like Nova's config drive (nova/virt/configdrive.py), but in cloud-init's NoCloud layout, which the
test guest and cloud images read without a metadata service:

  <instances_path>/<instance_uuid>/disk.config   ISO 9660 + Joliet + Rock Ridge, volume label "cidata"
    meta-data        instance-id: <uuid> / local-hostname: <hostname> / public-keys: [<key line>, ...]
    user-data        the boot request's user_data, or "#cloud-config\\n{}\\n"
    network-config   version 2: one ethernet per port, matched by MAC, dhcp4: true

genisoimage writes timestamps into the image, so two builds of the same files differ byte for byte.
Whether the drive must be rebuilt is therefore decided on its *content*: the existing image is read
back (its volume label and the files in its root directory) and compared with what it should hold.
Imports neither ansible nor libvirt.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import shutil
import struct
import tempfile
import unicodedata

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.host import guest_files
from ansible_collections.bootflow.cloud.plugins.module_utils.common.files import atomic_install, find_bin
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import check_uuid, normalize_mac, user_data_problem
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError

LABEL = "cidata"
FILENAME = "disk.config"
DEFAULT_USER_DATA = "#cloud-config\n{}\n"
FILES = ("meta-data", "network-config", "user-data")
MAX_ISO_READ = 64 * 1024 * 1024  # an existing image larger than this is not read back, just replaced
_SECTOR = 2048
_LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class ConfigDriveError(BootflowError):
    """Config drive step failure."""


# --------------------------------------------------------------------------------------------
# contents


def ip_hostname(ip):
    """neutron's host-<ip with dashes> (the name dnsmasq hands out, too)."""
    return "host-" + str(ipaddress.ip_address(ip)).replace(".", "-").replace(":", "-")


def sanitize_hostname(name):
    """A DNS label from an instance display name, like nova.utils.sanitize_hostname: ASCII only,
    lower case, blanks/underscores/dots become '-', everything but [a-z0-9-] dropped, runs of '-'
    folded, at most 63 characters, no leading/trailing '-'. Returns '' when nothing is left."""
    text = unicodedata.normalize("NFKD", str(name or "")).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[\s_.]+", "-", text)
    text = re.sub(r"[^a-z0-9-]+", "", text)
    text = re.sub(r"-{2,}", "-", text).strip("-")
    return text[:63].rstrip("-")


def pick_hostname(hostname=None, name=None, ports=(), instance_uuid=None):
    """The guest's local-hostname: O(hostname) if given (must be a valid label), else one derived
    from the instance name, else host-<ip of the first port>, else host-<first 8 hex of the uuid>."""
    if hostname:
        h = str(hostname).lower()
        if not _LABEL_RE.fullmatch(h):
            raise ConfigDriveError("invalid hostname %s (one DNS label: a-z, 0-9 and '-', at most 63)" % (ascii(hostname),))
        return h
    h = sanitize_hostname(name)
    if h:
        return h
    for port in ports or ():
        if port.get("ip"):
            return ip_hostname(port["ip"])
    if instance_uuid:
        return "host-" + check_uuid(instance_uuid).replace("-", "")[:8]
    raise ConfigDriveError("no hostname can be derived: give hostname, name or a port with an ip")


def _yaml_str(value):
    """A YAML double-quoted scalar (JSON string syntax, ASCII)."""
    out = ['"']
    for ch in str(value):
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("\\u%04x" % ord(ch) if ord(ch) < 0x10000 else "\\U%08x" % ord(ch))
    out.append('"')
    return "".join(out)


def normalize_public_keys(public_keys):
    """The SSH public keys for the guest: each one OpenSSH line (the controller checked the key itself)."""
    out = []
    for i, key in enumerate(public_keys or []):
        if not isinstance(key, str) or not key.strip():
            raise ConfigDriveError("public_keys[%d] must be a non-empty string (one OpenSSH public key line)" % i)
        if "\n" in key.strip() or "\r" in key:
            raise ConfigDriveError("public_keys[%d] must be one line (one OpenSSH public key)" % i)
        out.append(key.strip())
    return out


def render_meta_data(instance_uuid, hostname, public_keys=()):
    """NoCloud meta-data; ``public-keys`` as cloud-init's NoCloud reads it (a list of key lines), only when there
    are keys, so a drive without keys is what it always was."""
    out = "instance-id: %s\nlocal-hostname: %s\n" % (instance_uuid, hostname)
    if public_keys:
        out += "public-keys:\n" + "".join("  - %s\n" % _yaml_str(key) for key in public_keys)
    return out


def render_network_config(ports):
    """cloud-init network config version 2: every port's NIC matched by its MAC, DHCPv4 on it."""
    if not ports:
        return "version: 2\nethernets: {}\n"
    lines = ["version: 2", "ethernets:"]
    for i, port in enumerate(ports):
        lines += ["  eth%d:" % i,
                  "    match:",
                  "      macaddress: %s" % _yaml_str(port["mac"]),
                  "    dhcp4: true"]
    return "\n".join(lines) + "\n"


def render_user_data(user_data):
    if user_data is None or user_data == "":
        return DEFAULT_USER_DATA
    return user_data


def normalize_ports(ports):
    out, seen = [], set()
    for i, port in enumerate(ports or []):
        if not isinstance(port, dict):
            raise ConfigDriveError("ports[%d] must be a dict with mac (and ip)" % i)
        mac = normalize_mac(port.get("mac"))
        if mac in seen:
            raise ConfigDriveError("MAC %s is given for two ports" % mac)
        seen.add(mac)
        ip = port.get("ip")
        if ip:
            try:
                ip = str(ipaddress.ip_address(ip))
            except ValueError:
                raise ConfigDriveError("ports[%d]: ip %r is not an IP address" % (i, ip))
        out.append(dict(mac=mac, ip=ip or None, id=port.get("id")))
    return out


def drive_files(instance_uuid, hostname, user_data, ports, public_keys=()):
    """{file name: bytes} of the drive."""
    ud = render_user_data(user_data)
    data = ud.encode("utf-8") if isinstance(ud, str) else bytes(ud)
    problem = user_data_problem(data)
    if problem:
        raise ConfigDriveError(problem)
    return {"meta-data": render_meta_data(instance_uuid, hostname, normalize_public_keys(public_keys)).encode("utf-8"),
            "network-config": render_network_config(ports).encode("utf-8"),
            "user-data": data}


# --------------------------------------------------------------------------------------------
# reading an ISO 9660 image back (root directory only: the drive is flat)


class IsoError(BootflowError):
    """Not a readable ISO 9660 image."""


def _u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def _dir_records(data):
    """Directory records of one directory extent: (extent, size, flags, raw name bytes, system use)."""
    pos = 0
    while pos < len(data):
        length = data[pos]
        if length == 0:          # records never span sectors: skip to the next one
            pos = (pos // _SECTOR + 1) * _SECTOR
            continue
        rec = data[pos:pos + length]
        if len(rec) < 34:
            raise IsoError("truncated directory record")
        nlen = rec[32]
        name = rec[33:33 + nlen]
        su_start = 33 + nlen + (1 - nlen % 2)  # padding byte after an even-length name
        yield _u32(rec, 2), _u32(rec, 10), rec[25], name, rec[su_start:]
        pos += length


def _rr_name(system_use):
    """Rock Ridge NM name from a record's system use area, or None."""
    pos, parts = 0, []
    while pos + 4 <= len(system_use):
        sig, length = system_use[pos:pos + 2], system_use[pos + 2]
        if length < 4:
            break
        if sig == b"NM" and length >= 5:
            parts.append(system_use[pos + 5:pos + length])
        pos += length
    return b"".join(parts).decode("utf-8", "replace") if parts else None


def read_iso(path, max_size=MAX_ISO_READ):
    """(volume label, {file name: bytes}) of the root directory of an ISO 9660 image.

    Names come from Joliet when present, else Rock Ridge, else the ISO 9660 name (lower-cased,
    version suffix dropped). Raises IsoError for anything that is not such an image.
    """
    size = os.path.getsize(path)
    if size > max_size:
        raise IsoError("image is larger than %d bytes" % max_size)
    with open(path, "rb") as f:
        def read(sector, length):
            f.seek(sector * _SECTOR)
            data = f.read(length)
            if len(data) != length:
                raise IsoError("image is truncated")
            return data

        pvd = joliet = None
        for sector in range(16, 64):
            vd = read(sector, _SECTOR)
            if vd[1:6] != b"CD001":
                raise IsoError("no ISO 9660 volume descriptor")
            if vd[0] == 1 and pvd is None:
                pvd = vd
            elif vd[0] == 2 and vd[88:90] == b"%/" and vd[90:91] in (b"@", b"C", b"E"):
                joliet = vd
            elif vd[0] == 255:
                break
        if pvd is None:
            raise IsoError("no primary volume descriptor")
        label = pvd[40:72].decode("ascii", "replace").rstrip(" ")
        vd = joliet or pvd
        root = vd[156:190]
        root_data = read(_u32(root, 2), _u32(root, 10))
        files = {}
        for extent, length, flags, raw, system_use in _dir_records(root_data):
            if raw in (b"\0", b"\1") or flags & 0x02:   # ".", ".." and sub-directories
                continue
            if joliet is not None:
                name = raw.decode("utf-16-be", "replace")
            else:
                name = _rr_name(system_use) or raw.decode("ascii", "replace").lower()
            name = name.split(";", 1)[0]
            if joliet is None and name.endswith("."):
                name = name[:-1]
            files[name] = read(extent, length)
    return label, files


def describe_files(files):
    """Text of the drive for --diff (user-data shown as its size and digest only)."""
    out = []
    for name in sorted(files or {}):
        data = files[name]
        out.append("==> %s <==\n" % name)
        if name == "user-data":
            out.append("(%d bytes, sha256 %s)\n" % (len(data), hashlib.sha256(data).hexdigest()))
        else:
            out.append(data.decode("utf-8", "replace"))
    return "".join(out)


# --------------------------------------------------------------------------------------------
# the config_drive step


def genisoimage_argv(genisoimage, output, paths):
    """The command of cloud-init's NoCloud docs (volume id cidata, Joliet + Rock Ridge)."""
    return [genisoimage, "-output", output, "-volid", LABEL, "-joliet", "-rock", "-quiet",
            "-input-charset", "utf-8"] + list(paths)


def _current(path):
    """(label, files) of the existing drive, None when there is none, or ('', None) when unreadable."""
    if not os.path.lexists(path):
        return None
    if not os.path.isfile(path) or os.path.islink(path):
        raise ConfigDriveError("%s exists and is not a regular file" % path)
    try:
        return read_iso(path)
    except (IsoError, OSError, UnicodeError, struct.error):
        return "", None


def config_drive_step(p, check_mode=False, run=None):
    """p: instance_uuid, name, hostname, user_data, public_keys, ports, instances_path, state.

    run(argv) -> (rc, stdout, stderr) runs genisoimage (the module passes command.run_argv).
    """
    instances_path = p.get("instances_path") or layout.INSTANCES_PATH
    if not os.path.isabs(instances_path):
        raise ConfigDriveError("instances_path must be an absolute path")
    instances_path = os.path.normpath(instances_path)
    uuid = check_uuid(p.get("instance_uuid"))
    inst_dir = layout.instance_dir(instances_path, uuid)
    path = os.path.join(inst_dir, FILENAME)
    state = p.get("state") or "present"
    result = dict(changed=False, path=path, label=LABEL, hostname=None, instance_id=uuid, files=[], warnings=[])

    if state == "absent":
        cur = _current(path)
        if cur is not None:
            result["changed"] = True
            result["diff"] = dict(before_header=path, after_header=path,
                                  before=describe_files(cur[1]) if cur[1] is not None else "(unreadable image)\n",
                                  after="")
            if not check_mode:
                try:
                    os.unlink(path)
                except OSError as e:
                    raise ConfigDriveError("cannot remove %s: %s" % (path, e))
        return result

    # ---- present: validate everything first
    ports = normalize_ports(p.get("ports"))
    hostname = pick_hostname(p.get("hostname"), p.get("name"), ports, uuid)
    files = drive_files(uuid, hostname, p.get("user_data"), ports, p.get("public_keys"))
    result.update(hostname=hostname, files=sorted(files), meta_data=files["meta-data"].decode("utf-8"),
                  network_config=files["network-config"].decode("utf-8"))
    if not os.path.isdir(instances_path):
        raise ConfigDriveError("instances_path %s does not exist on this host (the hypervisor role creates it)"
                               % instances_path)
    cur = _current(path)
    same = cur is not None and cur[0] == LABEL and cur[1] == files
    before = "" if cur is None else describe_files(cur[1]) if cur[1] is not None else "(unreadable image)\n"
    result["diff"] = dict(before_header=path, after_header=path, before=before, after=describe_files(files))
    if same:
        # a drive written before the drive was private (0644, a 0755 directory) is tightened
        if not check_mode:
            gid = guest_files.qemu_gid()
            tightened = guest_files.secure_instance_dir(inst_dir, gid)
            result["changed"] = guest_files.secure_guest_file(path, gid) or tightened
        return result
    result["changed"] = True
    if check_mode:
        return result
    genisoimage = find_bin("genisoimage") or find_bin("mkisofs")
    if not genisoimage:
        raise ConfigDriveError("genisoimage is not installed on this host (Debian package genisoimage)")

    made_dir = False
    if not os.path.isdir(inst_dir):
        try:
            os.mkdir(inst_dir, guest_files.DIR_MODE)
        except OSError as e:
            raise ConfigDriveError("cannot create the instance directory %s: %s" % (inst_dir, e))
        made_dir = True
    gid = guest_files.qemu_gid()
    guest_files.secure_instance_dir(inst_dir, gid)
    stage = tmp = None
    try:
        stage = tempfile.mkdtemp(dir=inst_dir, prefix=".config-drive.")
        names = []
        for name in sorted(files):
            fpath = os.path.join(stage, name)
            with open(fpath, "wb") as f:
                f.write(files[name])
            names.append(fpath)
        fd, tmp = tempfile.mkstemp(dir=inst_dir, prefix="." + FILENAME + ".", suffix=".tmp")
        os.close(fd)
        argv = genisoimage_argv(genisoimage, tmp, names)
        rc, out, err = run(argv)
        if rc != 0:
            raise ConfigDriveError("genisoimage failed (rc=%s): %s" % (rc, (err or out).strip()), cmd=argv)
        label, written = read_iso(tmp)
        if label != LABEL or written != files:
            raise ConfigDriveError("genisoimage wrote an image that does not hold the expected files "
                                   "(label %r, files %s)" % (label, sorted(written)), cmd=argv)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        # the drive holds the user data: root and QEMU's group only (guest_files), before it gets its name
        guest_files.secure_guest_file(tmp, gid)
        atomic_install(tmp, path, guest_files.FILE_MODE)
        tmp = None
    except BaseException as e:
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if stage:
            shutil.rmtree(stage, ignore_errors=True)
            stage = None
        if made_dir:
            with contextlib.suppress(OSError):
                os.rmdir(inst_dir)
        if isinstance(e, IsoError):
            raise ConfigDriveError("the image genisoimage wrote cannot be read back: %s" % e)
        if isinstance(e, OSError):
            raise ConfigDriveError("writing the config drive %s failed: %s" % (path, e))
        raise
    finally:
        if stage:
            shutil.rmtree(stage, ignore_errors=True)
    return result
