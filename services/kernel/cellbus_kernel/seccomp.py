"""A seccomp filter that keeps session processes off UNIX-domain sockets they did not inherit.

Landlock (see `sandbox`) decides which files a session may open and which TCP ports it may
reach, but before its ABI 9 it does not govern ``connect()`` to a *pathname* UNIX socket: a
cell could talk to PostgreSQL's ``/var/run/postgresql/.s.PGSQL.5432`` (often trusted without a
password), a Docker socket or D-Bus. This filter makes ``socket(AF_UNIX, ...)`` fail with
EACCES. ``socketpair()`` is a different system call and keeps working, so pipes between a
session's own processes (``multiprocessing``, ``subprocess``) are untouched.

The filter is a few classic-BPF instructions installed with ``prctl(PR_SET_SECCOMP)``
(``no_new_privs`` must already be set, as Landlock's enforcement does). Only x86-64 and
AArch64 are known; on other architectures `install` returns False and the caller reports the
gap. Foreign system-call ABIs (i386 and x32 on x86-64, with ``socketcall``) are refused
outright, so the filter cannot be stepped around by switching ABI.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import socket
import struct

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# classic BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000

# offsets in struct seccomp_data
_NR = 0
_ARCH = 4
_ARG0 = 16  # args[0], low 32 bits on little-endian machines

_ARCHES = {
    # machine: (AUDIT_ARCH_*, __NR_socket)
    "x86_64": (0xC000003E, 41),
    "aarch64": (0xC00000B7, 198),
}
_X32_SYSCALL_BIT = 0x40000000


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for `machine` (default: this one) as raw sock_filter instructions."""
    known = _ARCHES.get(machine or platform.machine())
    if known is None:
        return None
    audit_arch, nr_socket = known
    deny = SECCOMP_RET_ERRNO | errno.EACCES
    return b"".join(
        [
            _insn(_LD_W_ABS, 0, 0, _ARCH),
            _insn(_JEQ_K, 1, 0, audit_arch),  # our ABI: go on
            _insn(_RET_K, 0, 0, deny),  # another ABI (i386 socketcall, ...): refused
            _insn(_LD_W_ABS, 0, 0, _NR),
            _insn(_JGE_K, 0, 1, _X32_SYSCALL_BIT),  # x32 system calls: refused
            _insn(_RET_K, 0, 0, deny),
            _insn(_JEQ_K, 0, 3, nr_socket),  # not socket(): allowed
            _insn(_LD_W_ABS, 0, 0, _ARG0),
            _insn(_JEQ_K, 0, 1, socket.AF_UNIX),  # socket(AF_UNIX, ...): refused
            _insn(_RET_K, 0, 0, deny),
            _insn(_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        ]
    )


_LIBC = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PROGRAM = program()
_BUFFER = ctypes.create_string_buffer(_PROGRAM or b"", len(_PROGRAM or b""))
_FPROG = _SockFprog(len(_PROGRAM or b"") // 8, ctypes.cast(_BUFFER, ctypes.c_void_p))
"""Built once, in the template: a fork only hands it to the kernel."""


def install() -> bool:
    """Install the filter on this thread (and what it starts); False where it cannot be."""
    if _PROGRAM is None:
        return False
    result: int = _LIBC.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(_FPROG), 0, 0)
    return result == 0
