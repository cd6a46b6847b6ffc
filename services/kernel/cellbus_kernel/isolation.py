"""What keeps user code away from the worker's credentials and connections.

User code runs in session processes forked from the template. It must not reach the worker's
settings (the Redis URL and its password) or its connections:

- the template is started with an allow-listed environment (`session_environment`): no
  ``CELLBUS_*`` variable ever reaches a session, not even in its initial environment block;
- it is started with ``exec`` and no inherited descriptors, so it holds no connection of the
  worker; a session talks only to its own socket pair;
- the worker and the template make themselves non-dumpable (`forbid_inspection`), so a session
  process running as the same user cannot read their ``/proc/<pid>/environ`` or memory, nor
  ptrace them; sessions make themselves dumpable again so their own user can debug them;
- with ``CELLBUS_SESSION_USER`` set and the worker running as root, session processes drop to
  that user (`sandbox.become_user`), so even root's view of the worker is out of their reach;
- and every session process enters the `sandbox` (Landlock, seccomp, limits) before user code.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import signal
from collections.abc import Mapping

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME, PR_GET_NAME = 15, 16

SPARE_NAME = "cellbus-spare"
"""The name (``/proc/PID/comm``) of a spare process until it is given its session: what tells
an operator, or a test counting session processes, that it serves no one yet."""

SESSION_ENV_ALLOWED = (
    "PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER",
    "LOGNAME", "TERM", "PYTHONPATH", "VIRTUAL_ENV",
)  # fmt: skip
"""The only variables a session process inherits: nothing of the worker's configuration."""


def session_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the template (and so of every session): an allow-list, never secrets."""
    env = {name: environ[name] for name in SESSION_ENV_ALLOWED if name in environ}
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TERM", "xterm-256color")
    return env


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int | bytes | ctypes.Array[ctypes.c_char]) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux: nothing to do
        _libc().prctl(option, value, 0, 0, 0)


def forbid_inspection() -> None:
    """Make this process's /proc files root-only and refuse ptrace from the same user."""
    _prctl(PR_SET_DUMPABLE, 0)


def allow_inspection() -> None:
    _prctl(PR_SET_DUMPABLE, 1)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent (the worker) dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def rename_process(name: str) -> str:
    """Give this process the name `name` (``/proc/PID/comm``, 15 bytes at most); its name
    before."""
    before = ctypes.create_string_buffer(16)
    _prctl(PR_GET_NAME, before)
    _prctl(PR_SET_NAME, name.encode()[:15])
    return before.value.decode(errors="replace")
