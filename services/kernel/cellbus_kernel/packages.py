"""The worksheet's own Python environment: ``%pip``, ``%uv`` and ``!pip`` install into it.

A session imports from two layers. The **base** is the kernel's own environment (the
scientific stack and whatever the deployment added to its image): read-only to sessions,
shared by all of them. The **worksheet's layer** is a plain folder in the worksheet's
workspace, ``<workspace>/.cellbus/site-packages`` (`layer_path`), which uv fills with
``uv pip install --target``. Being in the workspace, it follows the session to any worker
(the workspaces root is one shared volume), survives restarts and hibernation, counts in the
quota and is copied by a fork; nothing in it names a worker.

Why a ``--target`` folder and not a virtual environment over the base: in ``make run`` the
base is itself a virtual environment, and a venv made over it sees the interpreter's
installation, not the base's packages; and the session runs the base interpreter anyway,
so all it needs is a folder on ``sys.path``. It goes just before the base's site-packages
(`activate`), as a venv's own packages go before the system's: a package upgraded in the
worksheet shadows the base's copy from the next restart on.

uv resolves a ``--target`` install as if the folder were the whole environment, so every
base distribution the user did not name is passed to it as ``--excludes``
(`_base_exclusions`): ``%pip install seaborn`` adds seaborn alone and uses the base's numpy,
pandas and matplotlib; ``%pip install -U numpy`` (named) puts a newer numpy in the layer.

uv runs as the session (same sandbox, same limits, same user) with its cache in the
session's private TMPDIR (`_uv_environment`): never in the workspace (not listed, not
counted, not copied by a fork), never shared with another session (no package a session
could plant for another one to install), emptied when the session's process starts again.
Files are copied out of the cache, never hard-linked, so the workspace holds files of its own.

``!pip`` runs the ``pip`` found on PATH: the template puts the ``shims`` folder first (the
``pip`` and ``pip3`` there run this module's `main`), and the session process names its
layer in ``PIP_TARGET`` (which pip itself also honours, so ``python -m pip install`` lands
in the layer too, though without uv's speed or the base's exclusions).

After an install, "Restart to use updated packages" is said only when a module the session
had already imported now resolves to another file, or its file was rewritten
(`_replaced_modules`): installing a package that was never imported needs no restart.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import os
import re
import shlex
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cellbus_protocol.workspaces import PACKAGES_DIR

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

LAYER_DIR = "site-packages"
"""The folder, inside the workspace's `PACKAGES_DIR`, that holds the worksheet's packages."""
SHIMS = Path(__file__).with_name("shims")
"""``pip`` and ``pip3`` for shell commands (``!pip install``): they run `main`."""
TARGETED = frozenset({"install", "uninstall", "sync", "freeze", "show", "list"})
"""``uv pip`` subcommands that take ``--target`` (the others get ``--python`` alone)."""
RESTART = "Restart to use updated packages"
"""What the user is told when an imported module was replaced (`_replaced_modules`)."""
_NAME = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def layer_path(workspace: str) -> str:
    """The worksheet's layer in `workspace`."""
    return os.path.join(workspace, PACKAGES_DIR, LAYER_DIR)


def prepare(shell: InteractiveShell) -> None:
    """In the template, once: the ``%pip`` and ``%uv`` magics, ``!`` commands watched for
    changes to the layer, and the shims first on PATH (inherited by every fork, so a session
    writes nothing for them)."""
    magics = shell.magics_manager
    magics.register_function(_pip_magic, "line", "pip")
    magics.register_function(_uv_magic, "line", "uv")
    shell.system = _watching(shell.system)  # type: ignore[method-assign]  # wrapped to notice !pip
    interpreter_bin = os.path.dirname(sys.executable)  # `!python` is the session's Python
    os.environ["PATH"] = os.pathsep.join([str(SHIMS), interpreter_bin, os.environ.get("PATH", "")])


def activate(workspace: str | None = None) -> None:
    """In the session process, before any user code: the layer of `workspace` (the working
    directory: the sandbox put the process there) on ``sys.path`` ahead of the base's
    site-packages, its ``.pth`` files read, ``PIP_TARGET`` naming it and its console scripts
    on PATH. The folder need not
    exist yet: the first install makes it and its packages import at once."""
    layer = layer_path(workspace or os.getcwd())
    os.environ["PIP_TARGET"] = layer
    # Console scripts of the worksheet's packages (`!tinycmd`), just after the shims.
    path = os.environ.get("PATH", "").split(os.pathsep)
    scripts = os.path.join(layer, "bin")
    if scripts not in path:
        path.insert(path.index(str(SHIMS)) + 1 if str(SHIMS) in path else 0, scripts)
        os.environ["PATH"] = os.pathsep.join(path)
    if layer in sys.path:
        return
    base = set(site.getsitepackages())
    position = next((i for i, entry in enumerate(sys.path) if entry in base), len(sys.path))
    sys.path.insert(position, layer)
    if os.path.isdir(layer):
        site.addsitedir(layer)  # only its .pth files: the folder is on sys.path already


def current_layer() -> str:
    """The layer of this session (`activate` named it), or the working directory's."""
    return os.environ.get("PIP_TARGET") or layer_path(os.getcwd())


def main(argv: Sequence[str]) -> int:
    """``pip ...`` or ``uv ...`` as a program (the shims, ``python -m cellbus_kernel.packages
    pip install x``): the same as the magics, in the layer ``PIP_TARGET`` names."""
    if not argv or argv[0] not in ("pip", "uv"):
        print("usage: python -m cellbus_kernel.packages pip|uv ARGS...", file=sys.stderr)
        return 2
    if argv[0] == "pip":
        return run_pip(list(argv[1:]), current_layer())
    return run_uv(list(argv[1:]), current_layer())


def run_uv(args: list[str], layer: str) -> int:
    """``uv ARGS``: ``uv pip ...`` goes to the layer (`run_pip`), anything else to uv as is."""
    if args and args[0] == "pip":
        return run_pip(args[1:], layer)
    return subprocess.run([uv_binary(), *args], env=_uv_environment(), check=False).returncode


def run_pip(args: list[str], layer: str) -> int:
    """``pip ARGS`` with uv, in `layer`: ``list`` shows both layers; ``install``,
    ``uninstall``, ``sync``, ``freeze`` and ``show`` work on the layer; the rest of ``uv pip``
    sees the base interpreter. Output goes to this process's stdout and stderr as it comes."""
    if not args:
        args = ["--help"]
    command, rest = args[0], args[1:]
    if command == "list" and not rest:
        print(format_list(layer))
        return 0
    uv = [uv_binary(), "pip", command, "--python", sys.executable]
    if command not in TARGETED:
        return subprocess.run([*uv, *rest], env=_uv_environment(), check=False).returncode
    uv += ["--target", layer]
    if command not in ("install", "sync"):
        return subprocess.run([*uv, *rest], env=_uv_environment(), check=False).returncode
    os.makedirs(layer, mode=0o700, exist_ok=True)
    with _exclusions(rest) as excludes:
        return subprocess.run(
            [*uv, "--excludes", excludes, *rest], env=_uv_environment(), check=False
        ).returncode


def uv_binary() -> str:
    """The uv the base environment installed (PyPI's ``uv`` puts its binary beside Python)."""
    return os.path.join(os.path.dirname(sys.executable), "uv")


def _uv_environment() -> dict[str, str]:
    """uv's environment: its cache in the session's private TMPDIR, files copied out of it,
    no interpreter downloads (the base interpreter is the one to install for)."""
    env = dict(os.environ)
    env.update(
        UV_CACHE_DIR=os.path.join(tempfile.gettempdir(), "uv-cache"),
        UV_LINK_MODE="copy",
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    return env


@contextlib.contextmanager
def _exclusions(args: Sequence[str]) -> Iterator[str]:
    """A file naming the base distributions for ``--excludes`` (`_base_exclusions`), removed
    after the install. It lives in the session's private TMPDIR."""
    handle, path = tempfile.mkstemp(prefix="uv-excludes-", suffix=".txt")
    try:
        with os.fdopen(handle, "w") as out:
            out.write("".join(f"{name}\n" for name in sorted(_base_exclusions(args))))
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _base_exclusions(args: Sequence[str]) -> set[str]:
    """The base's distributions, less those the command names (a requirement like
    ``numpy>=2.5`` or a wheel file ``numpy-2.5.0-...whl``): what uv must take as given."""
    named = {_normalize(name) for name in _named_distributions(args)}
    return {name for name in base_distributions() if name not in named}


def _named_distributions(args: Sequence[str]) -> list[str]:
    names = []
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg.startswith("-"):
            # Options with a value in the next argument (requirements files, indexes, ...).
            skip_next = "=" not in arg and arg in _VALUED_OPTIONS
            continue
        base = os.path.basename(arg.rstrip("/"))
        if base.endswith(".whl"):
            names.append(base.split("-", 1)[0])
        elif "/" not in arg and (match := _NAME.match(arg)):
            names.append(match.group(1))
    return names


_VALUED_OPTIONS = frozenset(
    {
        "-r", "--requirements", "-c", "--constraints", "--overrides", "--excludes",
        "-e", "--editable", "-i", "--index-url", "--index", "--default-index",
        "--extra-index-url", "-f", "--find-links", "--python", "-p", "--target", "--prefix",
        "--extra", "--group", "--index-strategy", "--keyring-provider", "--resolution",
        "--prerelease", "--exclude-newer", "--link-mode", "-C", "--config-setting",
        "--python-version", "--python-platform", "--cache-dir", "--config-file",
        "--build-constraints", "-b", "--reinstall-package", "--no-binary", "--only-binary",
    }
)  # fmt: skip
"""uv pip options whose value is the next argument (so the value is not taken for a name)."""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_distributions() -> dict[str, str]:
    """The base's distributions, normalized name -> version."""
    import importlib.metadata  # not in the template: only sessions that list or install

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=site.getsitepackages()):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_normalize(name), dist.version)
    return found


def layer_distributions(layer: str) -> dict[str, str]:
    """The worksheet's distributions, normalized name -> version."""
    if not os.path.isdir(layer):
        return {}
    import importlib.metadata

    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=[layer]):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_normalize(name), dist.version)
    return found


def format_list(layer: str) -> str:
    """``pip list`` of both layers: each distribution with its version and layer; a base
    distribution the worksheet's layer shadows says so."""
    own = layer_distributions(layer)
    rows = [(name, version, "worksheet") for name, version in own.items()]
    rows += [
        (name, version, "base (shadowed)" if name in own else "base")
        for name, version in base_distributions().items()
    ]
    rows.sort(key=lambda row: (row[0], row[2] != "worksheet"))
    header = ("Package", "Version", "Layer")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    lines = [header, tuple("-" * width for width in widths), *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _pip_magic(line: str) -> None:
    """``%pip ARGS``: ``pip ARGS`` with uv, into this worksheet's own environment (kept in
    its workspace, so it follows the worksheet anywhere). ``%pip list`` shows both layers."""
    _in_session(run_pip, shlex.split(line))


def _uv_magic(line: str) -> None:
    """``%uv ARGS``: uv itself; ``%uv pip ...`` works on this worksheet's environment."""
    _in_session(run_uv, shlex.split(line))


def _in_session(run: Callable[[list[str], str], int], args: list[str]) -> None:
    started = time.time_ns()
    sys.stdout.flush()
    sys.stderr.flush()
    status = run(args, current_layer())
    _after_change(started)
    if status != 0:
        print(f"(exit status {status})", file=sys.stderr)


def _watching(system: Callable[[str], object]) -> Callable[[str], object]:
    """``!command`` as IPython runs it, and then, if the layer changed (``!pip install``), the
    same care as after ``%pip``: fresh import caches, a restart asked for only if needed."""

    def system_watched(cmd: str) -> object:
        started = time.time_ns()
        before = _stamp(current_layer())
        try:
            return system(cmd)
        finally:
            if _stamp(current_layer()) != before:
                _after_change(started)

    return system_watched


def _stamp(layer: str) -> int | None:
    """Changes when a distribution is added or removed (its folders are the layer's entries)."""
    try:
        return os.stat(layer).st_mtime_ns
    except OSError:
        return None


def _after_change(started: int) -> None:
    importlib.invalidate_caches()
    replaced = _replaced_modules(started)
    if replaced:
        shown = ", ".join(sorted(replaced)[:5]) + (", ..." if len(replaced) > 5 else "")
        print(f"{RESTART} (already imported: {shown}).")


def _replaced_modules(since_ns: int) -> list[str]:
    """Imported top-level modules that an import now would take from another file, or whose
    file was written since `since_ns` (a reinstall in place): those need a restart."""
    replaced = []
    for name, module in list(sys.modules.items()):
        loaded = getattr(module, "__spec__", None)
        origin = getattr(loaded, "origin", None)
        # Modules loaded from a file under their own name (not frozen or built in, nor an
        # alias such as __mp_main__).
        if "." in name or loaded is None or loaded.name != name or not loaded.has_location:
            continue
        if not isinstance(origin, str) or not os.path.isabs(origin):
            continue
        spec = importlib.machinery.PathFinder.find_spec(name, sys.path)
        now = spec.origin if spec is not None else None
        if now != origin:
            replaced.append(name)
            continue
        with contextlib.suppress(OSError):
            if os.stat(origin).st_ctime_ns >= since_ns:
                replaced.append(name)
    return replaced


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
