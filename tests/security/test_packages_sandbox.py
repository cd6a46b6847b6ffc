"""Packages from inside a cell, as an ordinary account, in every mode: ``%pip`` installs into
the worksheet's own layer in its workspace and nowhere else. uv run by hand (the session may
run any program) cannot install into the base environment that every session imports from,
nor into another worksheet's layer; a package one session installed is not importable in
another's; and uv's cache, where a planted file would be installed by whoever uses it next,
is private to each session.
"""

from __future__ import annotations

from ..support.wheels import WHEEL_MAKER
from .conftest import Person

EVIL = "wheel('evilpkg', '1.0', 'import os\\nPLANTED_BY = os.getcwd()\\n')"


async def test_uv_by_hand_cannot_install_into_the_base_or_another_worksheet(
    victim: Person, attacker: Person
) -> None:
    made = await attacker.run(WHEEL_MAKER + f"print({EVIL})")
    assert not made.errors, made.errors
    wheel = made.stdout.strip()
    their_layer = victim.facts["cwd"] + "/.cellbus/site-packages"
    run = await attacker.run(
        f"""
import os, subprocess, sys, sysconfig
uv = os.path.join(os.path.dirname(sys.executable), "uv")
base = sysconfig.get_paths()["purelib"]
ways = {{
    "base": ["--python", sys.executable],
    "system": ["--system", "--break-system-packages", "--python", sys.executable],
    "base-target": ["--python", sys.executable, "--target", base],
    "their-layer": ["--python", sys.executable, "--target", {their_layer!r}],
}}
for name, args in ways.items():
    done = subprocess.run([uv, "pip", "install", "--no-cache", *args, {wheel!r}],
                          capture_output=True, text=True)
    denied = "denied" in done.stderr.lower() or "not permitted" in done.stderr.lower()
    print(name, done.returncode != 0, denied)
print("in-base", os.path.exists(os.path.join(base, "evilpkg")))
"""
    )
    assert not run.errors, run.errors
    assert run.lines == [
        "base True True",
        "system True True",
        "base-target True True",
        "their-layer True True",
        "in-base False",
    ], run.stdout
    # In its own worksheet it may install what it likes: that changes nothing for others.
    own = await attacker.run(f"%pip install {wheel}\nimport evilpkg\nprint(evilpkg.PLANTED_BY)")
    assert not own.errors and own.lines[-1] == victim.facts["cwd"].replace(
        victim.session, attacker.session
    ), (own.stdout, own.errors)
    check = await victim.run(
        "import importlib.util, os\n"
        "print(importlib.util.find_spec('evilpkg'), os.path.exists('.cellbus'))"
    )
    assert check.lines == ["None False"], (check.stdout, check.errors)


async def test_uvs_cache_is_private_to_each_session(victim: Person, attacker: Person) -> None:
    made = await victim.run(WHEEL_MAKER + "print(wheel('goodpkg', '1.0', 'GOOD = 1\\n'))")
    wheel = made.stdout.strip()
    installed = await victim.run(
        f"%pip install {wheel}\nimport os, tempfile\n"
        "cache = os.path.join(tempfile.gettempdir(), 'uv-cache')\n"
        "print(cache, os.path.isdir(cache))"
    )
    assert not installed.errors, installed.errors
    cache, exists = installed.lines[-1].split()
    assert exists == "True"
    found = await attacker.run(
        f"""
import os
for name, attempt in {{
    "list": lambda: os.listdir({cache!r}),
    "plant": lambda: open({cache!r} + "/planted", "w"),
}}.items():
    try:
        attempt()
        print(name, "allowed")
    except OSError as exc:
        print(name, type(exc).__name__)
"""
    )
    assert found.lines == ["list PermissionError", "plant PermissionError"], found.stdout
