"""From inside a cell, as an ordinary account, in every mode: each crossing an attacker tried
is refused, and ordinary work still works.

Every attacking cell prints one line per attempt (`ATTEMPT`): ``<label> refused <errno>`` or
``<label> ALLOWED``; the tests assert every attempt was refused, and by what.
"""

from __future__ import annotations

import pytest

from cellbus_kernel.isolation import SPARE_NAME

from .conftest import ATTEMPT, SANDBOX_SETTINGS, WITH_SESSION_USER, Person, Target


def refusals(output: str) -> dict[str, str]:
    """``{label: errno name or "ALLOWED"}`` from an attacking cell's output."""
    found = {}
    for line in output.splitlines():
        label, verdict, *why = line.split()
        found[label] = why[0] if verdict == "refused" else verdict
    return found


async def attack(attacker: Person, code: str) -> dict[str, str]:
    run = await attacker.run(ATTEMPT + code)
    assert not run.errors, run.errors
    return refusals(run.stdout)


# -- files ----------------------------------------------------------------------------------------


async def test_the_database_secret_and_data_folder_are_out_of_reach(
    target: Target, attacker: Person
) -> None:
    if target.data_dir is None:  # the services keep no files on the kernel's machine
        data = "/var/lib/postgresql"
        names = ["listing"]
    else:
        data = str(target.data_dir)
        names = ["listing", "database"]
        if (target.data_dir / "secret").exists():  # the tests mostly give CELLBUS_SECRET
            names.append("secret")
    found = await attack(
        attacker,
        f"""
attempt("listing", lambda: os.listdir({data!r}))
attempt("database", lambda: open({data!r} + "/cellbus.db", "rb").read())
attempt("secret", lambda: open({data!r} + "/secret").read())
""",
    )
    assert {name: found[name] for name in names} == dict.fromkeys(names, "EACCES")


async def test_the_machines_disks_are_out_of_reach(attacker: Person) -> None:
    # As uid 0 without capabilities a session would still own the disks' device files.
    found = await attack(
        attacker,
        """
import stat
disks = [name for name in os.listdir("/dev") if stat.S_ISBLK(os.stat("/dev/" + name).st_mode)]
print("disks", "found" if disks else "NONE")
for name in disks:
    attempt(name, lambda: open("/dev/" + name, "rb").read(512))
attempt("kmsg", lambda: open("/dev/kmsg", "rb").read(1))
""",
    )
    assert found.pop("disks") == "found"
    assert set(found.values()) <= {"EACCES", "EPERM"}, found


async def test_the_servers_open_files_are_out_of_reach_through_proc(attacker: Person) -> None:
    # The attack that read the SQLite database: find it among the server's descriptors.
    found = await attack(
        attacker,
        """
def server():
    template = os.getppid()
    for line in open(f"/proc/{template}/status"):
        if line.startswith("PPid:"):
            return int(line.split()[1])
pid = server()
descriptors = os.listdir(f"/proc/{pid}/fd") if os.getuid() == 0 else ["0"]  # numbers only
attempt("fd-link", lambda: [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in descriptors])
attempt("fd-open", lambda: [open(f"/proc/{pid}/fd/{fd}", "rb") for fd in descriptors])
attempt("environ", lambda: open(f"/proc/{pid}/environ", "rb").read())
attempt("mem", lambda: open(f"/proc/{pid}/mem", "rb").read(1))
attempt("template-environ", lambda: open(f"/proc/{os.getppid()}/environ", "rb").read())
""",
    )
    assert set(found.values()) <= {"EACCES", "EPERM"}, found
    assert len(found) == 5


async def test_another_sessions_files_memory_and_environment_are_out_of_reach(
    victim: Person, attacker: Person
) -> None:
    facts = victim.facts
    found = await attack(
        attacker,
        f"""
attempt("their-file", lambda: open({facts["cwd"]!r} + "/secret.txt").read())
attempt("their-tmp", lambda: open({facts["tmp"]!r} + "/secret.txt").read())
attempt("their-folder", lambda: os.listdir({facts["cwd"]!r}))
attempt("sessions-root", lambda: os.listdir(os.path.dirname({facts["cwd"]!r})))
attempt("their-environ", lambda: open("/proc/{facts["pid"]}/environ", "rb").read())
attempt("their-mem", lambda: open("/proc/{facts["pid"]}/mem", "rb").read(1))
attempt("their-cwd", lambda: os.listdir("/proc/{facts["pid"]}/cwd"))
""",
    )
    assert set(found.values()) <= {"EACCES", "EPERM"}, found
    assert len(found) == 7
    # ... and the victim still has all of it.
    check = await victim.run("print(SECRET, open('secret.txt').read())")
    assert check.stdout == "victim-secret-42 victim-secret-42\n"


async def test_nothing_can_be_planted_where_services_start_or_outside_the_own_folder(
    target: Target, attacker: Person
) -> None:
    found = await attack(
        attacker,
        f"""
import sys
here = os.getcwd()
attempt("service-code", lambda: open(os.path.dirname(__import__("cellbus_kernel").__file__)
                                     + "/argparse.py", "w"))
attempt("site-packages", lambda: open([p for p in sys.path if p.endswith("site-packages")][0]
                                      + "/hmac.py", "w"))
attempt("server-cwd", lambda: open(f"/proc/{{os.getppid()}}/cwd/argparse.py", "w"))
attempt("tmp", lambda: open("/tmp/planted.py", "w"))
attempt("var-tmp", lambda: open("/var/tmp/planted.py", "w"))
attempt("sessions-root", lambda: open({str(target.sessions_dir)!r} + "/planted.py", "w"))
attempt("dotdot", lambda: open(os.path.join(here, "..", "planted.py"), "w"))
os.symlink("/etc/shadow", "shadow-link")
attempt("symlink-read", lambda: open("shadow-link").read())
os.symlink(os.path.dirname(here), "up")
attempt("symlink-write", lambda: open("up/planted.py", "w"))
attempt("hardlink", lambda: os.link("/etc/passwd", "passwd-link"))
""",
    )
    assert set(found.values()) <= {"EACCES", "EPERM", "EXDEV", "ENOENT"}, found
    assert "ALLOWED" not in found.values()
    assert len(found) == 10


# -- network --------------------------------------------------------------------------------------


async def test_redis_postgresql_and_the_web_service_are_unreachable(
    target: Target, attacker: Person
) -> None:
    found = await attack(
        attacker,
        f"""
import socket
def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
def unix(path):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
def listen(port):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port)); sock.listen()
attempt("redis", lambda: connect({target.redis_port}))
attempt("postgres", lambda: connect(5432))
attempt("web", lambda: connect({target.web_port}))
attempt("postgres-socket", lambda: unix("/var/run/postgresql/.s.PGSQL.5432"))
attempt("abstract-socket", lambda: unix("\\0cellbus-test"))
attempt("listen", lambda: listen(0))
""",
    )
    assert found == {
        "redis": "EACCES",
        "postgres": "EACCES",
        "web": "EACCES",
        "postgres-socket": "EACCES",
        "abstract-socket": "EACCES",
        "listen": "EACCES",
    }


# -- processes ------------------------------------------------------------------------------------


async def test_signals_and_ptrace_reach_no_process_outside_the_session(
    victim: Person, attacker: Person
) -> None:
    victim_pid = victim.facts["pid"]
    found = await attack(
        attacker,
        f"""
import ctypes, signal
libc = ctypes.CDLL(None, use_errno=True)
def ptrace(pid):
    if libc.ptrace(16, pid, 0, 0) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
template = os.getppid()
def named(name):
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and open(f"/proc/{{pid}}/comm").read().strip() == name:
                return int(pid)
        except OSError:
            pass
    raise LookupError(name)
spare = named({SPARE_NAME!r})  # forked ahead for the next session: not yet in a sandbox
attempt("kill-template", lambda: os.kill(template, signal.SIGKILL))
attempt("kill-spare", lambda: os.kill(spare, signal.SIGKILL))
attempt("kill-victim", lambda: os.kill({victim_pid}, signal.SIGKILL))
attempt("kill-init", lambda: os.kill(1, 0))
attempt("ptrace-template", lambda: ptrace(template))
attempt("ptrace-spare", lambda: ptrace(spare))
attempt("ptrace-victim", lambda: ptrace({victim_pid}))
attempt("spare-memory", lambda: open(f"/proc/{{spare}}/mem", "rb").read(1))
attempt("privileges", lambda: os.setuid(0) if os.getuid() else os.setuid(1))
""",
    )
    assert set(found.values()) <= {"EPERM", "EACCES"}, found
    assert len(found) == 9
    alive = await victim.run("print(SECRET)")
    assert alive.stdout == "victim-secret-42\n"


async def test_the_environment_holds_no_setting_of_the_services(attacker: Person) -> None:
    run = await attacker.run(
        "import os\nprint(sorted(k for k in os.environ if 'CELLBUS' in k or 'REDIS' in k))"
    )
    assert run.stdout == "[]\n"


# -- resources ------------------------------------------------------------------------------------


async def test_file_limits_give_a_clear_error_in_the_cell_and_the_session_lives_on(
    attacker: Person,
) -> None:
    big = SANDBOX_SETTINGS["session_max_file_mb"] + 1
    run = await attacker.run(
        f"""
with open("big.bin", "wb") as f:
    f.write(b"x" * {big} * 2**20)
"""
    )
    assert run.errors and run.errors[0]["ename"] == "OSError"
    assert "CELLBUS_SESSION_MAX_FILE_MB" in run.errors[0]["evalue"]
    run = await attacker.run(
        "files = []\nfor _ in range({}):\n    files.append(open('f', 'w'))".format(
            SANDBOX_SETTINGS["session_max_open_files"]
        )
    )
    assert run.errors and "CELLBUS_SESSION_MAX_OPEN_FILES" in run.errors[0]["evalue"]
    alive = await attacker.run(
        "import resource\nprint(resource.getrlimit(resource.RLIMIT_CORE), len(files) > 200)\n"
        "for f in files: f.close()"
    )
    assert alive.stdout == "(0, 0) True\n"


@pytest.mark.parametrize("target", WITH_SESSION_USER, indirect=True)
async def test_a_fork_bomb_stops_at_the_process_limit(attacker: Person) -> None:
    # Linux never applies RLIMIT_NPROC to uid 0: a session user is what makes it hold. The
    # limit counts from the tasks its user ran when the session started (counted at most a
    # second before), so it stops within a few of the limit, not at exactly the limit.
    limit = SANDBOX_SETTINGS["session_max_processes"]
    run = await attacker.run(
        f"""
import subprocess
children = []
for _ in range({4 * limit}):
    children.append(subprocess.Popen(["sleep", "60"]))
"""
    )
    assert run.errors and "CELLBUS_SESSION_MAX_PROCESSES" in run.errors[0]["evalue"]
    alive = await attacker.run("for c in children: c.kill(); c.wait()\nprint(len(children))")
    assert limit // 2 < int(alive.stdout) < 2 * limit


# -- ordinary work --------------------------------------------------------------------------------


async def test_ordinary_work_still_works(target: Target, attacker: Person) -> None:
    run = await attacker.run(
        """
import multiprocessing, os, subprocess, sys, tempfile
import numpy as np
import matplotlib.pyplot as plt
print(int(np.arange(10).sum()))
plt.plot([1, 2, 3]); plt.savefig("plot.png"); print(os.path.getsize("plot.png") > 1000)
open("data.txt", "w").write("kept"); print(open("data.txt").read())
with tempfile.NamedTemporaryFile() as f: print(not f.name.startswith(os.getcwd()))  # private
print(subprocess.run(["echo", "from a subprocess"], capture_output=True, text=True).stdout.strip())
print(subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                     text=True).stdout.strip())
with multiprocessing.Pool(2) as pool: print(pool.map(abs, [-1, -2]))
"""
    )
    assert not run.errors, run.errors
    assert run.lines == ["45", "True", "kept", "True", "from a subprocess", "42", "[1, 2]"]


@pytest.mark.parametrize("target", ["one-program"], indirect=True)
async def test_pip_installs_over_https(attacker: Person) -> None:
    run = await attacker.run(
        """
import subprocess, sys
done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                       "--target", "packages", "--index-url", "https://pypi.org/simple",
                       "six==1.17.0"], capture_output=True, text=True)
print(done.returncode, done.stderr[-500:])
sys.path.insert(0, "packages")
import six
print(six.__version__)
"""
    )
    assert not run.errors, run.errors
    assert run.lines[-1] == "1.17.0", run.stdout
