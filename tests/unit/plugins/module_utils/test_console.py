# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The console log's tail (module_utils/host/console.py): line ends, characters a terminal would act on, the
line count and Nova's 100 KiB limit, on real files."""

from __future__ import annotations

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host import console


def test_line_ends_are_folded_and_control_characters_shown_as_question_marks():
    data = b"SeaBIOS\r\nbooting\rGUEST-INIT: started\n\x1b[2Jbell\x07 tab\there \xc3\xa9\n"
    assert console.tail_lines(data) == ["SeaBIOS", "booting", "GUEST-INIT: started", "?[2Jbell? tab\there \u00e9"]


@pytest.mark.parametrize("length,expected", [(None, ["a", "b", "c"]), (2, ["b", "c"]), (0, []), (9, ["a", "b", "c"])])
def test_length_counts_lines_from_the_end(tmp_path, length, expected):
    log = tmp_path / "console.log"
    log.write_bytes(b"a\nb\nc\n")
    res = console.read_console(str(log), length)
    assert res["lines"] == expected and res["output"] == "".join(x + "\n" for x in expected)
    assert (res["size"], res["truncated"], res["changed"]) == (6, False, False)


def test_only_the_last_bytes_are_read_and_the_cut_line_is_dropped(tmp_path):
    log = tmp_path / "console.log"
    log.write_bytes(b"".join(b"line %05d\n" % i for i in range(1000)))    # 11 bytes a line
    res = console.read_console(str(log), max_bytes=100)
    assert res["truncated"] and res["size"] == 11000
    # 100 bytes: the newline ending line 990 (a cut line, dropped), then lines 991-999 whole
    assert res["lines"] == ["line %05d" % i for i in range(991, 1000)]


def test_a_missing_log_and_a_negative_length_are_clear_errors(tmp_path):
    with pytest.raises(BootflowError, match="has not started on this host"):
        console.read_console(str(tmp_path / "nope.log"))
    (tmp_path / "c.log").write_text("x\n")
    with pytest.raises(BootflowError, match="length must be 0 or more lines"):
        console.read_console(str(tmp_path / "c.log"), -1)
