# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-compute's get_console_output on the host: the tail of an instance's serial console log.

PRIVATE to the collection: may change at any time. No ansible imports.
"""

from __future__ import annotations

import os
import re

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError

# Nova's libvirt driver returns at most the last 100 KiB of the log (MAX_CONSOLE_BYTES)
MAX_CONSOLE_BYTES = 100 * 1024
# what a terminal would act on (escape sequences, bells, backspaces): shown as '?', as Nova's API does
_UNPRINTABLE = re.compile(r"[^\t\n\x20-\x7e\u00a0-\uffff]")


def tail_lines(data, length=None):
    """The text of ``data`` (bytes: the end of a console log) as lines: CR-LF and lone CRs folded into LF, other
    control characters shown as '?', and only the last ``length`` lines when it is given (0: none)."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    lines = [_UNPRINTABLE.sub("?", line) for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if length is not None:
        lines = lines[-length:] if length else []
    return lines


def read_console(path, length=None, max_bytes=MAX_CONSOLE_BYTES):
    """{output, lines, size, truncated}: the last ``length`` lines of the last ``max_bytes`` of ``path`` (a first
    line cut by the byte limit is dropped). A log that does not exist yet (the domain never started) is an
    error naming the path."""
    if length is not None and length < 0:
        raise BootflowError("length must be 0 or more lines, got %d" % length)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            cut = size > max_bytes
            if cut:
                f.seek(size - max_bytes)
            data = f.read(max_bytes)
    except FileNotFoundError:
        raise BootflowError("console log %s does not exist: the instance's domain has not started on this host."
                            % path) from None
    except OSError as exc:
        raise BootflowError("cannot read console log %s: %s" % (path, exc.strerror)) from None
    if cut and b"\n" in data:
        data = data[data.index(b"\n") + 1:]
    lines = tail_lines(data, length)
    return dict(changed=False, path=path, size=size, truncated=cut, lines=lines,
                output="".join(line + "\n" for line in lines))
