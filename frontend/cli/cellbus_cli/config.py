"""Where the client keeps its state: the config dir and the config file holding the token.

The config dir is `--config-dir`, else `$CELLBUS_CONFIG_DIR`, else
`platformdirs.user_config_dir("cellbus")`. It is created with mode 0700. `config.json` in it
holds `{"url", "token", "username"}` and is written with mode 0600 atomically: the new content
goes to a temporary file created 0600 in the same dir (`tempfile.mkstemp`), is flushed and
fsynced, then `os.replace`d over the old file, so the token is never in a file anyone else can
read, not even for a moment. A config file found readable by others is tightened to 0600 when
it is loaded. The prompt history of `cellbus repl` (`history`) lives in the same dir, also 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import platformdirs

from .errors import EXIT_USAGE, CliError

CONFIG_FILE = "config.json"
HISTORY_FILE = "history"
ENV_CONFIG_DIR = "CELLBUS_CONFIG_DIR"
DIR_MODE = 0o700
FILE_MODE = 0o600


@dataclass(frozen=True)
class Config:
    """What `cellbus login` stores: the server, the bearer token and whose it is."""

    url: str | None = None
    token: str | None = None
    username: str | None = None

    def logged_out(self) -> Config:
        """The same server and user name, without the token."""
        return replace(self, token=None)


def config_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config dir: `explicit`, else $CELLBUS_CONFIG_DIR, else the platform's user config."""
    chosen = explicit or os.environ.get(ENV_CONFIG_DIR) or platformdirs.user_config_dir("cellbus")
    return Path(chosen).expanduser()


def ensure_dir(directory: Path) -> Path:
    """Create `directory` (and its parents) if missing; a directory made here is 0700.

    An existing directory is left as it is: it may be one the user chose for other things,
    and the files written in it are 0600 whatever the directory's mode.
    """
    if not directory.is_dir():
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(directory, DIR_MODE)  # mkdir's mode is reduced by the umask; make it exact
    return directory


def load_config(directory: Path) -> Config:
    """The stored config, or an empty one when there is none."""
    path = directory / CONFIG_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return Config()
    if mode & 0o077:
        os.chmod(path, FILE_MODE)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read {path}: {error}", EXIT_USAGE) from error
    if not isinstance(raw, dict):
        raise CliError(f"cannot read {path}: not a JSON object", EXIT_USAGE)
    return Config(
        url=_str_or_none(raw.get("url")),
        token=_str_or_none(raw.get("token")),
        username=_str_or_none(raw.get("username")),
    )


def save_config(directory: Path, config: Config) -> Path:
    """Write `config` to the config file, 0600 from its first byte, replacing it atomically."""
    ensure_dir(directory)
    path = directory / CONFIG_FILE
    text = json.dumps(asdict(config), indent=2) + "\n"
    write_private(path, text)
    return path


def write_private(path: Path, text: str) -> None:
    """Atomically replace `path` with `text` in a file only its owner can read (0600)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp already makes it 0600; say so explicitly
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def history_path(directory: Path) -> Path:
    """The repl's history file, created empty and 0600 if missing (it holds code people typed)."""
    ensure_dir(directory)
    path = directory / HISTORY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.close(fd)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, FILE_MODE)
    return path


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
