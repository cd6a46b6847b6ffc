"""Workspaces from inside a cell, as an ordinary account, in every mode: a session's working
directory is its worksheet's workspace, and nothing else of the workspaces' root is within
reach, through a link it makes either; HOME and TMPDIR are private and not in the workspace;
the quota (``CELLBUS_WORKSPACE_QUOTA_MB``, `SANDBOX_SETTINGS`) holds against what code writes:
a cell that fills the workspace is told so, and code that raises its own file size limit to
write past it is stopped.
"""

from __future__ import annotations

import os

from cellbus_protocol.workspaces import MIB

from .conftest import SANDBOX_SETTINGS, Person
from .test_sandbox import attack

QUOTA = SANDBOX_SETTINGS["workspace_quota_mb"] * MIB
USED = """
import os
def used():
    total = 0
    for folder, _, names in os.walk("."):
        total += sum(os.lstat(os.path.join(folder, name)).st_size for name in names)
    return total
"""


async def test_another_workspace_and_the_workspaces_root_are_out_of_reach(
    victim: Person, attacker: Person
) -> None:
    theirs = victim.facts["cwd"]
    root = os.path.dirname(theirs)
    assert os.path.basename(theirs) == victim.session  # the victim works in its workspace
    found = await attack(
        attacker,
        f"""
attempt("list-root", lambda: os.listdir({root!r}))
attempt("plant-workspace", lambda: os.mkdir({root!r} + "/" + "0" * 32))
attempt("list-theirs", lambda: os.listdir({theirs!r}))
attempt("read-theirs", lambda: open({theirs!r} + "/secret.txt").read())
attempt("write-theirs", lambda: open({theirs!r} + "/planted.py", "w"))
os.symlink({theirs!r}, "their-workspace")
attempt("link-list", lambda: os.listdir("their-workspace"))
attempt("link-read", lambda: open("their-workspace/secret.txt").read())
attempt("link-write", lambda: open("their-workspace/planted.py", "w"))
os.symlink("..", "up")
attempt("link-root", lambda: os.listdir("up"))
attempt("link-root-write", lambda: os.mkdir("up/" + "1" * 32))
attempt("hardlink", lambda: os.link({theirs!r} + "/secret.txt", "stolen"))
""",
    )
    assert set(found.values()) <= {"EACCES", "EPERM", "EXDEV"}, found  # EXDEV: Landlock's link
    assert len(found) == 11
    check = await victim.run("print(sorted(os.listdir('.')))")
    assert check.stdout == "['secret.txt']\n"  # nothing planted


async def test_home_and_tmpdir_are_private_and_not_in_the_workspace(attacker: Person) -> None:
    run = await attacker.run(
        """
import os, tempfile
here = os.getcwd()
print(os.environ["PWD"] == here)
print(os.path.expanduser("~").startswith(here), tempfile.gettempdir().startswith(here))
open(os.path.expanduser("~/.cache-file"), "w").write("cache")
with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir()) as f:
    print(sorted(os.listdir(".")))
print(os.path.basename(here))
"""
    )
    assert not run.errors, run.errors
    assert run.lines == ["True", "False False", "[]", attacker.session]


async def fill(person: Person) -> None:
    """Fill the workspace but for 4 MiB, in files under the largest file a session may write
    (`SANDBOX_SETTINGS`): less is left than that largest file."""
    count = (QUOTA - 4 * MIB) // (4 * MIB)
    filled = await person.run(
        f"for i in range({count}):\n    open(f'part-{{i}}.bin', 'wb').write(b'x' * {4 * MIB})"
    )
    assert not filled.errors, filled.errors


async def test_a_cell_that_fills_the_workspace_is_told_and_the_quota_holds(
    attacker: Person,
) -> None:
    await fill(attacker)
    run = await attacker.run(f"open('more.bin', 'wb').write(b'x' * {8 * MIB})")
    assert run.errors and run.errors[0]["ename"] == "OSError"
    evalue = run.errors[0]["evalue"]
    assert "The workspace is full" in evalue and "CELLBUS_WORKSPACE_QUOTA_MB" in evalue, evalue
    measured = await attacker.run(USED + "print(used())")
    assert int(measured.stdout) <= QUOTA
    # Room made by deleting files counts from the workspace's next measure (the cell's end).
    emptied = await attacker.run("import glob\nfor name in glob.glob('*.bin'): os.remove(name)")
    assert not emptied.errors, emptied.errors
    freed = await attacker.run(f"open('more.bin', 'wb').write(b'x' * {8 * MIB}); print(used())")
    assert not freed.errors and freed.stdout == f"{8 * MIB}\n"


async def test_code_that_raises_its_file_size_limit_is_stopped_past_the_quota(
    attacker: Person,
) -> None:
    await fill(attacker)  # the soft limit is now what is left: 4 MiB, under the hard one
    run = await attacker.run(
        f"""
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
print(soft, hard, flush=True)  # out before the process is stopped, however soon that is
i = 0
while True:  # raised again before each file: the worker lowers it after each measure
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    try:
        with open(f"fill-{{i}}.bin", "wb") as f:
            f.write(b"x" * {8 * MIB})
    except OSError:  # lowered in between: again
        continue
    i += 1
"""
    )
    assert run.lines[0] == f"{4 * MIB} {SANDBOX_SETTINGS['session_max_file_mb'] * MIB}"
    assert run.errors and run.errors[0]["ename"] == "SessionProcessDied", run.errors
    evalue = run.errors[0]["evalue"]
    assert "went over the workspace quota" in evalue, evalue
    assert "CELLBUS_WORKSPACE_QUOTA_MB" in evalue
    # The next process finds the workspace full: it may write nothing there until files go.
    full = await attacker.run("with open('note.txt', 'w') as f:\n    f.write('hello')")
    assert full.errors and "The workspace is full" in full.errors[0]["evalue"]
    written = await attacker.run(USED + "print(used())")
    # Stopped within a measure or two (128 MiB written here; the margin is 16 MiB): a
    # bound that any disk meets, far from the gigabytes a minute of writing makes.
    assert int(written.stdout) < 16 * QUOTA
    await attacker.run("import glob\nfor name in glob.glob('*.bin'): os.remove(name)")
    cleaned = await attacker.run(USED + "open('note.txt', 'w').write('hello'); print(used())")
    assert not cleaned.errors, cleaned.errors
    assert cleaned.stdout == "5\n"


async def test_a_writer_left_running_in_the_background_is_stopped_with_its_session(
    attacker: Person,
) -> None:
    run = await attacker.run(
        f"""
import resource, subprocess, time
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
subprocess.Popen(
    ["sh", "-c", "i=0; while :; do head -c {8 * MIB} /dev/zero > bg-$i.bin; i=$((i+1)); done"],
    preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard)),
)
time.sleep(60)
"""
    )
    assert run.errors and "went over the workspace quota" in run.errors[0]["evalue"]
    # Nothing goes on writing: the count of its files stays as it was over half a second.
    counted = await attacker.run(
        "import glob, time\nbefore = len(glob.glob('bg-*'))\ntime.sleep(0.5)\n"
        "print(before == len(glob.glob('bg-*')))\n"
        "for name in glob.glob('bg-*'): os.remove(name)"
    )
    assert counted.stdout == "True\n", counted
