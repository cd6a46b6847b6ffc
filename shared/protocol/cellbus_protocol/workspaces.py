"""Where each worksheet's files live: its *workspace*, a folder named after its session.

A worksheet's session never changes, so ``<workspaces_dir>/<session>`` is the worksheet's
workspace for its whole life: the session's working directory on whichever kernel worker hosts
it, and the folder the web service serves files from. ``CELLBUS_WORKSPACES_DIR`` must be the
same shared folder (a volume) for every kernel worker and web process of a deployment; the one
program keeps it in ``CELLBUS_DATA_DIR/workspaces``.

The facts both services need live here, once: the default root, a workspace's path, the
folder of the worksheet's own packages inside it, and the quota's unit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PACKAGES_DIR = ".cellbus"
"""The folder inside a workspace that holds the worksheet's own Python environment (what
``%pip install`` adds over the base one). It is an ordinary folder of the workspace: listed,
counted in the quota, copied by a fork."""

MIB = 1024 * 1024


def default_workspaces_dir() -> Path:
    """Where workspaces are when ``CELLBUS_WORKSPACES_DIR`` is not set (a deployment sets it;
    on one machine every service of the same user finds the same folder)."""
    return Path(tempfile.gettempdir()) / f"cellbus-workspaces-{os.geteuid()}"


def workspaces_root(setting: str) -> Path:
    """The workspaces' root from the setting's value ("" for the default), absolute."""
    return Path(os.path.abspath(setting or default_workspaces_dir()))


def workspace_path(root: Path, session: str) -> Path:
    """The workspace of `session` under `root`. The session id is checked: it names one
    folder, never a path."""
    if not session or not session.isalnum() or not session.isascii():
        raise ValueError(f"not a session id: {session!r}")
    return root / session
