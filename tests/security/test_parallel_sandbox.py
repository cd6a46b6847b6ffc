"""Parallel cells from the attacker's side, in every mode: a Dask task runs in the session's
sandbox (the sandbox issue's probes, from a task) and works in its workspace, another
session's scheduler and workers refuse a stranger, nobody's dashboard is reachable from a
sandbox, and two users' tasks never share a process. Two tests per mode: each starts Dask
workers for two people, which takes a second or two.

The tasks print nothing (a worker's stdout is not the cell's): each returns its
``<label> refused <errno>`` lines, and the cell prints them.
"""

from __future__ import annotations

import textwrap

from .conftest import Person, Target
from .test_sandbox import refusals

IN_A_TASK = '''
import errno, io, os
from cellbus import parallel

def in_a_task(code):
    """Run attacking `code` on a Dask worker; its attempts' lines."""
    out = io.StringIO()
    def attempt(label, action):
        try:
            action()
        except OSError as exc:
            print(label, "refused", errno.errorcode.get(exc.errno, exc.errno), file=out)
        else:
            print(label, "ALLOWED", file=out)
    exec(code, {"attempt": attempt, "os": os, "__name__": "task"})
    return os.getpid(), out.getvalue()
'''
"""Attempts made on a Dask worker of the session, reported back to the cell."""


async def attack_from_a_task(attacker: Person, code: str) -> tuple[int, dict[str, str]]:
    """The pid of the Dask worker that ran `code`, and its attempts' verdicts."""
    run = await attacker.run(
        IN_A_TASK + f"pid, lines = parallel.submit(in_a_task, {textwrap.dedent(code)!r}).result()\n"
        "print(pid)\nprint(lines, end='')\n"
    )
    assert not run.errors, run.errors
    pid, *lines = run.lines
    return int(pid), refusals("\n".join(lines))


async def scheduler_of(victim: Person) -> tuple[str, int]:
    """The victim's scheduler address and dashboard port, its workers started."""
    run = await victim.run(
        """
        from cellbus import parallel
        parallel.map(abs, [-1, 2])
        info = parallel.client().scheduler_info()
        print(info["address"])
        print(info["services"]["dashboard"])
        """
    )
    assert not run.errors, run.errors
    address, port = run.lines
    return address, int(port)


async def test_a_task_cannot_reach_the_services_other_users_or_their_processes(
    target: Target, victim: Person, attacker: Person
) -> None:
    facts = victim.facts
    worker_pid, found = await attack_from_a_task(
        attacker,
        f"""
import ctypes, signal, socket
def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
def ptrace(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, pid, 0, 0) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
attempt("redis", lambda: connect({target.redis_port}))
attempt("postgres", lambda: connect(5432))
attempt("web", lambda: connect({target.web_port}))
attempt("their-file", lambda: open({facts["cwd"]!r} + "/secret.txt").read())
attempt("their-tmp", lambda: open({facts["tmp"]!r} + "/secret.txt").read())
attempt("their-environ", lambda: open("/proc/{facts["pid"]}/environ", "rb").read())
attempt("their-mem", lambda: open("/proc/{facts["pid"]}/mem", "rb").read(1))
attempt("kill-victim", lambda: os.kill({facts["pid"]}, signal.SIGKILL))
attempt("kill-template", lambda: os.kill(os.getppid(), signal.SIGKILL))
attempt("ptrace-template", lambda: ptrace(os.getppid()))
attempt("plant-service-code", lambda: open(os.path.dirname(__import__("cellbus_kernel").__file__)
                                           + "/argparse.py", "w"))
attempt("sessions-root", lambda: open({str(target.sessions_dir)!r} + "/planted.py", "w"))
""",
    )
    assert found == {
        "redis": "EACCES",
        "postgres": "EACCES",
        "web": "EACCES",
        "their-file": "EACCES",
        "their-tmp": "EACCES",
        "their-environ": "EACCES",
        "their-mem": "EACCES",
        "kill-victim": "EPERM",
        "kill-template": "EPERM",
        "ptrace-template": "EPERM",
        "plant-service-code": "EACCES",
        "sessions-root": "EACCES",
    }, found
    assert str(worker_pid) != facts["pid"]
    alive = await victim.run("print(SECRET, open('secret.txt').read())")
    assert alive.stdout == "victim-secret-42 victim-secret-42\n"
    # What a task may do: work in its session's workspace, with what the cell wrote there.
    run = await attacker.run(
        """
open("from-the-cell.txt", "w").write("cell")
def work(_):
    open("from-a-task.txt", "w").write(open("from-the-cell.txt").read() + " and task")
    return os.getcwd()
[task_cwd] = parallel.map(work, [0])
print(task_cwd == os.getcwd(), open("from-a-task.txt").read())
"""
    )
    assert not run.errors, run.errors
    assert run.lines == ["True cell and task"]


async def test_another_sessions_scheduler_and_dashboard_refuse_a_stranger(
    victim: Person, attacker: Person
) -> None:
    address, dashboard = await scheduler_of(victim)
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    run = await attacker.run(
        f"""
        import errno, socket, ssl
        from distributed import Client
        from distributed.security import Security
        def verdict(label, action):
            try:
                action()
            except OSError as exc:
                print(label, "refused", errno.errorcode.get(exc.errno, type(exc).__name__))
            except Exception as exc:
                print(label, "refused", type(exc).__name__)
            else:
                print(label, "ALLOWED")
        def join(security):
            Client({address!r}, security=security, timeout=5).close()
        verdict("own-credentials", lambda: join(Security.temporary()))
        verdict("no-tls", lambda: Client({"tcp://" + host + ":" + port!r}, timeout=5).close())
        def plain_tls():
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with socket.create_connection(({host!r}, {port}), timeout=5) as raw:
                with context.wrap_socket(raw) as tls:
                    tls.sendall(b"x" * 64)
                    if not tls.recv(1):
                        raise ConnectionResetError(errno.ECONNRESET, "closed")
        verdict("tls-without-certificate", plain_tls)
        verdict("dashboard", lambda: socket.create_connection(({host!r}, {dashboard}), timeout=5))
        """
    )
    assert not run.errors, run.errors
    found = refusals(run.stdout)
    assert "ALLOWED" not in found.values(), found
    assert len(found) == 4
    assert found["dashboard"] == "EACCES"  # the dashboard ports are bind-only for sandboxes
    # The victim's cluster is untouched; and two users' tasks never share a process.
    pids = "print(set(parallel.map(lambda _: os.getpid(), range(4))))"
    theirs = await victim.run("import os\n" + pids)
    ours = await attacker.run("import os\nfrom cellbus import parallel\n" + pids)
    assert not theirs.errors and not ours.errors, (theirs.errors, ours.errors)
    assert not (eval(theirs.stdout) & eval(ours.stdout))
