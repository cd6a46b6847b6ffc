"""The CLI's config: where it lives, and that the token is never readable by anyone else.

The config dir is created 0700 and config.json written 0600, atomically, even under umask 0;
the temporary file is 0600 before the token is written into it; a loose config file is tightened
on load; $CELLBUS_CONFIG_DIR and --config-dir choose the dir; the repl history is 0600.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellbus_cli.config import (
    Config,
    config_dir,
    history_path,
    load_config,
    save_config,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: anything not created with an explicit mode would be world-readable."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_save_creates_a_private_dir_and_file(tmp_path: Path, open_umask: None) -> None:
    directory = tmp_path / "deep" / "cellbus"
    path = save_config(directory, Config(url="http://h:1", token="t0k3n", username="alice"))
    assert mode(directory) == 0o700
    assert mode(path) == 0o600
    assert json.loads(path.read_text()) == {
        "url": "http://h:1",
        "token": "t0k3n",
        "username": "alice",
    }
    assert sorted(p.name for p in directory.iterdir()) == ["config.json"]  # no temp file left


def test_the_token_is_never_in_a_world_readable_file(
    tmp_path: Path, open_umask: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Look at the temporary file at the moment it replaces the old one: already 0600."""
    seen: list[tuple[int, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append((mode(Path(src)), Path(src).read_text()))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    save_config(tmp_path, Config(url="http://h:1", token="secret-token"))
    save_config(tmp_path, Config(url="http://h:1", token="another-token"))
    assert [m for m, _ in seen] == [0o600, 0o600]
    assert "another-token" in seen[1][1]
    for path in tmp_path.rglob("*"):
        assert mode(path) & 0o077 == 0, path


def test_a_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_config(tmp_path, Config(url="http://h:1", token="old"))

    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        save_config(tmp_path, Config(url="http://h:1", token="new"))
    assert load_config(tmp_path).token == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_an_existing_dir_is_left_alone_but_the_file_is_private(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    path = save_config(tmp_path, Config(token="t"))
    assert mode(tmp_path) == 0o755
    assert mode(path) == 0o600


def test_load_round_trip_and_missing(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nowhere") == Config()
    save_config(tmp_path, Config(url="http://h:1", token="t", username="bob"))
    loaded = load_config(tmp_path)
    assert loaded == Config(url="http://h:1", token="t", username="bob")
    assert loaded.logged_out() == Config(url="http://h:1", token=None, username="bob")


def test_a_loose_config_file_is_tightened_on_load(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"url": "http://h:1", "token": "t"}))
    path.chmod(0o644)
    assert load_config(tmp_path).token == "t"
    assert mode(path) == 0o600


def test_config_dir_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELLBUS_CONFIG_DIR", str(tmp_path / "env"))
    assert config_dir() == tmp_path / "env"
    assert config_dir(tmp_path / "option") == tmp_path / "option"
    monkeypatch.delenv("CELLBUS_CONFIG_DIR")
    assert config_dir().name == "cellbus"


def test_history_file_is_private(tmp_path: Path, open_umask: None) -> None:
    path = history_path(tmp_path / "cfg")
    assert path.exists()
    assert mode(path) == 0o600
    assert mode(tmp_path / "cfg") == 0o700
