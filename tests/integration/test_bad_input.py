# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A bad boot request fails with a clear message and leaves nothing behind: no DB row, no
domain, no file or reservation on the host."""

from __future__ import annotations

import pytest

CASES = [
    ("unknown flavor", ["-e", "bootflow_flavor=m1.nope"], "Flavor m1.nope could not be found."),
    ("unknown image", ["-e", "bootflow_image=no-such-image"], "Image no-such-image could not be found."),
    ("unknown network", ["-e", '{"bootflow_networks": ["no-such-net"]}'], "Network no-such-net could not be found."),
    ("invalid token", ["-e", "bootflow_token=gAAAAABnot-a-real-token"], "the token is not valid"),
    ("name with a newline", ["-e", '{"bootflow_instance_name": "bad\\nname"}'], "control characters"),
    ("negative volume size", ["-e", '{"bootflow_volume_size_gb": -1}'], "volume_size_gb must be between"),
]


@pytest.mark.parametrize("label,extra,message", CASES, ids=[c[0] for c in CASES])
def test_bad_request_fails_clearly_and_changes_nothing(it_env, label, extra, message):
    db_before, host_before = it_env.db_snapshot(), it_env.host_snapshot()
    res = it_env.play("boot.yml", "-e", "bootflow_instance_name=bad-input", *extra, check=False)
    assert res.rc != 0, "%s: boot.yml succeeded:\n%s" % (label, res.out[-3000:])
    assert message in res.out, "%s: expected %r in:\n%s" % (label, message, res.out[-3000:])
    assert it_env.db_snapshot() == db_before, label
    assert it_env.host_snapshot() == host_before, label
