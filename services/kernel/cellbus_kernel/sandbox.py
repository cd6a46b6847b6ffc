"""The sandbox every session process enters after its fork and before any user code.

User code is hostile. What a session process may touch is decided here, and enforced by the
kernel, with no root and no container needed (docs/security.md has the whole threat model):

- **Files** (Landlock): read and execute the Python installation, the system's programs and
  libraries, and a short list of ``/etc`` (no secret is on it); read and write only the
  session's workspace (its working directory: the worksheet's files, shared by every worker),
  its private folder on this worker (HOME, with its private TMPDIR inside) and ``/dev/shm``.
  The services' data, the worker's folder, the workspaces' root and other sessions' workspaces
  and folders are out of reach, whoever owns them, through a symlink too (Landlock checks the
  file a path resolves to).
- **Network** (Landlock, ABI 4): TCP connect only to ``CELLBUS_SESSION_PORTS`` (80 and 443 by
  default), bind only ``CELLBUS_SESSION_BIND_PORTS`` (none). Redis, PostgreSQL and the web
  service listen elsewhere. Pathname UNIX sockets are refused (`seccomp`; Landlock ABI 9 does
  it itself), abstract ones are scoped to the session (ABI 6).
- **Processes** (Landlock): each session is its own domain. It cannot ptrace, read the memory
  or ``/proc/<pid>/environ`` of, or (ABI 6) signal any process outside it: not the worker, the
  template, a service or another session. ``no_new_privs`` is set.
- **Resources** (rlimits): processes, open files, file size; no core dumps. Memory is watched
  by the worker (``CELLBUS_MEMORY_LIMIT_MB``), and so is the workspace's size
  (``CELLBUS_WORKSPACE_QUOTA_MB``, `workspace_quota`): the worker keeps the file size limit at
  what the quota leaves.
- **Identity**: as root, a session becomes ``CELLBUS_SESSION_USER``; without one it stays
  uid 0 with every capability dropped.

The template computes the rules once (`Policy`); each fork adds its own folder and enforces
them (`enter`). `probe` tells what this kernel can enforce, which the worker reports as its
``isolation``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import pwd
import resource
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import landlockpy
import msgspec
from landlockpy import AccessFS, AccessNet, Ruleset, Scope

from cellbus_protocol.isolation import Level, WorkerIsolation
from cellbus_protocol.workspaces import workspace_path, workspaces_root

from . import seccomp
from .config import KernelSettings

READ = AccessFS.READ_FILE | AccessFS.READ_DIR | AccessFS.EXECUTE
"""What a session may do with the system's files."""
FILE_ONLY = AccessFS.READ_FILE | AccessFS.WRITE_FILE | AccessFS.EXECUTE | AccessFS.TRUNCATE
FILE_ONLY |= AccessFS.IOCTL_DEV
"""The rights Landlock accepts on a rule for a single file (not a folder)."""
OWN = ~AccessFS.NONE & ~(AccessFS.MAKE_CHAR | AccessFS.MAKE_BLOCK)
"""What a session may do in its own folder: everything but make device nodes."""
SHARED_MEMORY = READ | AccessFS.WRITE_FILE | AccessFS.MAKE_REG | AccessFS.REMOVE_FILE
SHARED_MEMORY |= AccessFS.TRUNCATE
"""``/dev/shm``: multiprocessing's semaphores and shared memory live there."""
DEVICE = AccessFS.READ_FILE | AccessFS.WRITE_FILE | AccessFS.IOCTL_DEV
"""What a session may do with the few devices it needs (`DEVICE_FILES`)."""
DEVICE_FILES = (
    "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
    "/dev/ptmx", "/dev/pts",
)  # fmt: skip
"""Never the rest of /dev: a session running as uid 0 would own the disks there."""

SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sys")
"""Read (and execute) everything below these: programs, libraries, /proc (whose per-process
files Landlock's ptrace rule guards) and /sys (CPU topology for numpy)."""
ETC = (
    "alternatives", "ca-certificates", "ca-certificates.conf", "debian_version", "fonts",
    "gai.conf", "group", "host.conf", "hostname", "hosts", "inputrc", "ld.so.cache",
    "ld.so.conf", "ld.so.conf.d", "lsb-release",
    "locale.alias", "locale.conf", "localtime", "mailcap", "matplotlibrc", "mime.types",
    "nsswitch.conf", "os-release", "passwd", "pip.conf", "profile", "protocols", "python3",
    "python3.11", "python3.12", "python3.13", "resolv.conf", "services", "ssl/certs",
    "ssl/openssl.cnf", "terminfo", "timezone", "xdg",
)  # fmt: skip
"""The parts of /etc a session reads: name service, certificates, locales, time zones. Never
shadow files, sudoers, SSH host keys, TLS private keys or the services' configuration."""
TMP_NAME = ".tmp"
"""The session's private TMPDIR, inside its private folder (HOME, never in the workspace: a
cache or a temporary file is neither listed, nor counted in the quota, nor copied by a fork);
emptied whenever a process starts."""


@dataclass(frozen=True)
class Isolation:
    """What this kernel can enforce on session processes."""

    abi: int  # Landlock ABI version, 0 without Landlock
    unix_sockets: bool  # pathname UNIX sockets refused (seccomp or Landlock ABI 9)

    @property
    def covers(self) -> list[str]:
        covered = []
        if self.abi >= 1:
            covered += ["files", "ptrace"]
        if self.abi >= 4:
            covered.append("tcp")
        if self.abi >= 6:
            covered += ["signals", "abstract-sockets"]
        if self.unix_sockets:
            covered.append("unix-sockets")
        return covered

    @property
    def missing(self) -> list[str]:
        every = ["files", "ptrace", "tcp", "signals", "abstract-sockets", "unix-sockets"]
        return [name for name in every if name not in self.covers]

    @property
    def level(self) -> Level:
        if self.abi < 1:
            return Level.NONE
        return Level.PARTIAL if self.missing else Level.FULL

    def announced(self) -> WorkerIsolation:
        return WorkerIsolation(level=self.level, missing=self.missing)

    def describe(self) -> str:
        if self.level is Level.NONE:
            return (
                "session processes are NOT sandboxed: this kernel has no Landlock, so user code "
                "can reach everything this worker's user can; use it for yourself only"
            )
        text = f"session processes are sandboxed (Landlock ABI {self.abi})"
        if self.missing:
            text += "; not enforced here: " + ", ".join(self.missing)
        return text


def probe() -> Isolation:
    """What the running kernel can enforce (cheap: one system call)."""
    abi = landlockpy.abi_version()
    return Isolation(abi=abi, unix_sockets=abi >= 9 or seccomp.program() is not None)


def parse_ports(value: str, name: str) -> list[int] | None:
    """``"80,443"`` -> [80, 443]; ``"47000-47002"`` -> [47000, 47001, 47002]; ``"none"`` -> [];
    ``"any"`` -> None (no restriction)."""
    text = value.strip().lower()
    if text == "any":
        return None
    if text in ("none", ""):
        return []
    ports: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ValueError(
                f"{name}: expected port numbers or ranges, none or any; got {value!r}"
            ) from None
        for port in (low, high):
            if not 0 < port < 65536:
                raise ValueError(f"{name}: {port} is not a TCP port")
        if high - low >= MAX_PORT_RANGE:
            raise ValueError(f"{name}: {part} spans more than {MAX_PORT_RANGE} ports")
        ports.update(range(low, high + 1))
    return sorted(ports)


MAX_PORT_RANGE = 4096
"""Each port is a rule of its own in every session's ruleset: a range is kept short."""


class Limits(msgspec.Struct, frozen=True):
    """Resource limits of one session (0: none)."""

    processes: int = 256
    open_files: int = 1024
    file_mb: int = 4096


class Spec(msgspec.Struct, frozen=True):
    """What the worker tells the template about the sandbox of one new session process."""

    session: str
    sessions_dir: str
    workspaces_dir: str = ""
    user: str = ""
    connect: list[int] | None = None  # None: any port
    bind: list[int] | None = None
    limits: Limits = Limits()
    quota_mb: int = 0  # CELLBUS_WORKSPACE_QUOTA_MB, named in the error of a write it stops
    private: str = ""
    """The name of the private folder, when not the session's: a Dask worker of the session
    gets one of its own (``<session>.parallel-<n>``), so that it never empties the session's
    TMPDIR."""

    @property
    def home(self) -> str:
        """The session's private folder on this worker: HOME, and TMPDIR inside."""
        return os.path.join(self.sessions_dir, self.private or self.session)

    @property
    def workspace(self) -> str:
        """The session's workspace: its working directory (`workspace_path` checks the id)."""
        return str(workspace_path(Path(self.workspaces_dir), self.session))


def spec_from_settings(settings: KernelSettings) -> Spec:
    """Every session's sandbox on this worker (the session id is filled in per spawn); the
    settings' errors surface here, when the worker starts."""
    folder = settings.sessions_dir or str(default_sessions_dir())
    parallel_ports, dashboard_ports = [], []
    if settings.parallel_max_workers > 0:  # Dask's ports (`cellbus_kernel.parallel`)
        parallel_ports = parse_ports(settings.parallel_ports, "CELLBUS_PARALLEL_PORTS") or []
        dashboard_ports = (
            parse_ports(settings.parallel_dashboard_ports, "CELLBUS_PARALLEL_DASHBOARD_PORTS") or []
        )
        if set(parallel_ports) & set(dashboard_ports):
            raise ValueError(
                "CELLBUS_PARALLEL_PORTS and CELLBUS_PARALLEL_DASHBOARD_PORTS overlap: sessions "
                "could connect to every dashboard"
            )
    return Spec(
        session="",
        sessions_dir=os.path.abspath(folder),
        workspaces_dir=str(workspaces_root(settings.workspaces_dir)),
        user=settings.session_user if os.geteuid() == 0 else "",
        connect=_with(parse_ports(settings.session_ports, "CELLBUS_SESSION_PORTS"), parallel_ports),
        bind=_with(
            parse_ports(settings.session_bind_ports, "CELLBUS_SESSION_BIND_PORTS"),
            parallel_ports + dashboard_ports,
        ),
        limits=Limits(
            processes=settings.session_max_processes,
            open_files=settings.session_max_open_files,
            file_mb=settings.session_max_file_mb,
        ),
        quota_mb=settings.workspace_quota_mb,
    )


def _with(ports: list[int] | None, more: list[int]) -> list[int] | None:
    """`ports` (None: any) with `more` allowed too."""
    return None if ports is None else sorted(set(ports) | set(more))


def default_sessions_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"cellbus-sessions-{os.geteuid()}"


def prepare_sessions_dir(path: Path, user: str) -> None:
    """Make the root of the sessions' folders (the worker's, at start). A path that exists
    must be a real folder of this user's, not a link another user planted."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.lstat(path)
    if path.is_symlink() or not path.is_dir() or info.st_uid != os.geteuid():
        raise RuntimeError(f"{path} is not a folder of this user's: refusing to put sessions there")
    # Session users must reach their own folder, but not list the others.
    path.chmod(0o711 if user else 0o700)


def prepare_workspaces_dir(path: Path, user: str) -> None:
    """Make the workspaces' root (the worker's, at start), as `prepare_sessions_dir` does the
    sessions' root. It is shared with the other workers and the web processes (a volume), so
    one made by another of them may belong to another user: it is then left as it is, but it
    must be a real folder all the same (never a link)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_symlink() or not path.is_dir():
        raise RuntimeError(f"{path} is not a folder: refusing to put workspaces there")
    if os.lstat(path).st_uid == os.geteuid():
        path.chmod(0o711 if user else 0o700)


@dataclass(frozen=True)
class Policy:
    """The rules every session shares, computed once in the template so that each fork only
    opens the paths and hands them to the kernel (well under a millisecond)."""

    isolation: Isolation
    paths: tuple[tuple[str, AccessFS], ...]  # the system's paths and what a session may do
    handled_fs: AccessFS
    scoped: Scope

    @classmethod
    def for_this_system(cls) -> Policy:
        isolation = probe()
        abi = max(isolation.abi, 1)
        handled = landlockpy.fs_for_abi(abi)
        rules = [(path, READ) for path in _outermost(_readable())]
        rules += [("/dev", AccessFS.READ_DIR), ("/dev/shm", SHARED_MEMORY)]
        rules += [(path, DEVICE) for path in DEVICE_FILES]
        paths = tuple(
            (path, (access if os.path.isdir(path) else access & FILE_ONLY) & handled)
            for path, access in rules
            if os.path.exists(path)
        )
        scoped = (Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL) & landlockpy.scope_for_abi(abi)
        return cls(isolation=isolation, paths=paths, handled_fs=handled, scoped=scoped)

    def rules(self, spec: Spec) -> Ruleset | None:
        """A ruleset with everything but the session's own folder (None without Landlock).
        The template's spare process makes it ahead of time, off a session's path."""
        if self.isolation.abi < 1:
            return None
        handled_net = AccessNet.NONE
        if spec.connect is not None:
            handled_net |= AccessNet.CONNECT_TCP
        if spec.bind is not None:
            handled_net |= AccessNet.BIND_TCP
        rules = Ruleset(
            handled_fs=self.handled_fs,
            handled_net=handled_net & landlockpy.net_for_abi(self.isolation.abi),
            scoped=self.scoped,
        )
        for path, access in self.paths:
            with contextlib.suppress(OSError):  # gone since the template looked
                rules.allow_path(path, access)
        for port in spec.connect or ():
            rules.allow_port(port, AccessNet.CONNECT_TCP)
        for port in spec.bind or ():
            rules.allow_port(port, AccessNet.BIND_TCP)
        return rules

    def enter(self, spec: Spec, rules: Ruleset | None, tasks_running: int) -> str:
        """In a freshly forked session process: make its folder, become its user, set its
        limits and enforce `rules` (this fork's copy of a `Policy.rules` ruleset) with the
        folder added.
        `tasks_running` is how many tasks the session's user runs already (`tasks_of`).
        Returns the workspace (now the working directory)."""
        global _quota_mb
        own, workspace = _own_folders(spec)
        _quota_mb = spec.quota_mb
        _set_limits(spec.limits, tasks_running)
        if spec.user:
            become_user(spec.user)
        elif os.geteuid() == 0:
            drop_capabilities()
        _set_no_new_privs()  # no setuid program gives anything back; seccomp needs it
        if rules is not None:
            rules.allow_path(own, OWN & self.handled_fs)
            rules.allow_path(workspace, OWN & self.handled_fs)
            rules.restrict()
            rules.close()
        if self.isolation.abi < 9:
            seccomp.install()
        return workspace


def same_rules(one: Spec, other: Spec) -> bool:
    """Whether a ruleset made for `one` serves `other` (the same ports)."""
    return (one.connect, one.bind) == (other.connect, other.bind)


def _outermost(paths: list[str]) -> list[str]:
    """`paths` without those inside another of them (one rule covers a whole hierarchy)."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path.startswith(parent.rstrip("/") + "/") for parent in kept):
            kept.append(path)
    return kept


def _readable() -> list[str]:
    """Folders and files a session reads: the system's, and this Python's installation."""
    paths = [p for p in SYSTEM_FOLDERS if os.path.exists(p)]
    for name in ETC:
        path = os.path.join("/etc", name)
        if os.path.exists(path):
            paths.append(path)
            real = os.path.realpath(path)  # /etc/resolv.conf may point into /run
            if real != path and not real.startswith(("/usr/", "/etc/")):
                paths.append(real)
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    prefixes.add(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))))
    paths += sorted(prefixes)
    # site-packages and editable installs: each entry on sys.path that is a real folder,
    # never the current directory (the worker's, which is no business of a session's).
    cwd = os.getcwd()
    for entry in sys.path:
        if entry and os.path.isdir(entry) and os.path.realpath(entry) != cwd:
            paths.append(os.path.realpath(entry))
    return paths


def _own_folders(spec: Spec) -> tuple[str, str]:
    """The session's private folder `<sessions_dir>/<session>` with a fresh TMPDIR inside,
    and its workspace `<workspaces_dir>/<session>` (each its user's, mode 0700); the process
    moved into the workspace. Returns (private folder, workspace)."""
    workspace = spec.workspace  # checks the session id: one folder's name, never a path
    own = spec.home
    tmp = os.path.join(own, TMP_NAME)
    if os.path.lexists(tmp):
        shutil.rmtree(tmp, ignore_errors=True)  # what the last process left (follows no link)
    folders = (own, tmp, workspace)
    for folder in folders:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            if os.path.islink(folder) or not os.path.isdir(folder):
                raise RuntimeError(f"{folder} is not a folder") from None
    if spec.user:
        entry = account(spec.user)
        for folder in folders:
            os.chown(folder, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    os.chdir(workspace)
    return own, workspace


def set_environment(spec: Spec) -> None:
    """The session's HOME and TMPDIR (private, on this worker), PWD (its workspace) and, with
    a session user, USER and LOGNAME, set by the spare process given the session (see
    `template`), before it enters the sandbox."""
    own = spec.home
    os.environ.update(HOME=own, TMPDIR=os.path.join(own, TMP_NAME), PWD=spec.workspace)
    if spec.user:
        os.environ.update(USER=spec.user, LOGNAME=spec.user)
    tempfile.tempdir = None  # found again, from TMPDIR, on first use


def _set_limits(limits: Limits, tasks_running: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.open_files:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    if limits.file_mb:
        size = limits.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        # A write past the limit fails with EFBIG (an error in the cell) instead of SIGXFSZ
        # killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if limits.processes:
        # RLIMIT_NPROC counts every task of the (real) user: allow this many more.
        ceiling = tasks_running + limits.processes
        resource.setrlimit(resource.RLIMIT_NPROC, (ceiling, ceiling))


@functools.cache
def account(name: str) -> pwd.struct_passwd:
    """User `name`, looked up once (by the template, so forks need no name service)."""
    return pwd.getpwnam(name)


def session_uid(spec: Spec) -> int:
    return account(spec.user).pw_uid if spec.user else os.getuid()


class TaskCounts:
    """How many tasks each session user runs, for `Limits.processes`. Counting reads all of
    /proc (about 2 ms on a busy machine), so the template counts after a fork rather than
    before, and at most once a second: a burst of new sessions, which competes with those
    starting for two cores, shares one count."""

    EVERY = 1.0

    def __init__(self) -> None:
        self._counted: dict[int, tuple[float, int]] = {}  # uid -> (when, how many)

    def get(self, uid: int) -> int:
        if uid not in self._counted:
            self._count(uid)
        return self._counted[uid][1]

    def refresh(self) -> None:
        """Count again the users last counted over `EVERY` seconds ago."""
        now = time.monotonic()
        for uid, (when, _) in list(self._counted.items()):
            if now - when >= self.EVERY:
                self._count(uid)

    def _count(self, uid: int) -> None:
        self._counted[uid] = (time.monotonic(), tasks_of(uid))


def tasks_of(uid: int) -> int:
    """How many tasks (processes and threads) `uid` runs now, as RLIMIT_NPROC counts them."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                pass
    return count


_quota_mb = 0
"""In a session process: its workspace's quota in MiB (`Policy.enter` sets it)."""


def limit_hint(exc: BaseException) -> str:
    """A sentence naming the session limit that `exc` hit, or "" if it hit none."""
    if not isinstance(exc, OSError) or exc.errno not in LIMIT_HINTS:
        return ""
    if exc.errno == errno.EFBIG and _workspace_full():
        return (
            f"The workspace is full: it may hold {_quota_mb} MiB (CELLBUS_WORKSPACE_QUOTA_MB); "
            "delete files to make room."
        )
    if exc.errno == errno.EAGAIN:  # also a non-blocking socket's "try again": look closer
        ceiling = resource.getrlimit(resource.RLIMIT_NPROC)[0]
        if ceiling == resource.RLIM_INFINITY or tasks_of(os.getuid()) < ceiling:
            return ""
    setting, what = LIMIT_HINTS[exc.errno]
    return f"The session reached a limit: {what} ({setting})."


def set_file_limit(soft: int) -> None:
    """In a session process: its file size soft limit, `soft` bytes (at most the hard limit,
    CELLBUS_SESSION_MAX_FILE_MB), as the worker measured what the quota leaves."""
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _workspace_full() -> bool:
    """Whether the file size limit that stopped a write was the quota's: the worker lowers
    the soft limit to what the workspace has left (`workspace_quota`), below the hard one
    (CELLBUS_SESSION_MAX_FILE_MB)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    return (
        bool(_quota_mb)
        and soft != resource.RLIM_INFINITY
        and (hard == resource.RLIM_INFINITY or soft < hard)
    )


LIMIT_HINTS = {
    errno.EFBIG: ("CELLBUS_SESSION_MAX_FILE_MB", "the largest file a session may write"),
    errno.EMFILE: ("CELLBUS_SESSION_MAX_OPEN_FILES", "the files a session may hold open"),
    errno.EAGAIN: ("CELLBUS_SESSION_MAX_PROCESSES", "the processes a session may start"),
}
"""Errors that mean a session's limit was reached, and the setting that sets it."""


def become_user(name: str) -> None:
    """Drop root for user `name` (no supplementary groups)."""
    entry = account(name)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


PR_SET_NO_NEW_PRIVS = 38
_LIBC = ctypes.CDLL(None, use_errno=True)


def _set_no_new_privs() -> None:
    if _LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


PR_SET_SECUREBITS = 28
SECBIT_NOROOT, SECBIT_NOROOT_LOCKED = 1 << 0, 1 << 1
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE, SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 6, 1 << 7
_SECURE_BITS = (
    SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED
    | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED
)  # fmt: skip
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAPSET_NUMBER = {"x86_64": 126, "aarch64": 91}.get(platform.machine())


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CAP_HEADER = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
_NO_CAPS = (_CapData * 2)()


def drop_capabilities() -> None:
    """Give up every capability for good: a uid-0 session process keeps none (no raw
    sockets, no module loading, no bypassing file permissions), and no program it runs gets
    one back: uid 0 no longer means privileges on exec (SECBIT_NOROOT, locked), and
    ``no_new_privs`` keeps setuid and file capabilities from adding any."""
    libc = _LIBC
    if libc.prctl(PR_SET_SECUREBITS, _SECURE_BITS, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECUREBITS) failed")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    number = _CAPSET_NUMBER
    if number is None:
        raise OSError(errno.ENOSYS, "cannot drop capabilities on this architecture")
    if libc.syscall(number, ctypes.byref(_CAP_HEADER), _NO_CAPS) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
