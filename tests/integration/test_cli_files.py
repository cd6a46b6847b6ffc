"""`cellbus files ls|get|put|rm` against a live server (`cellbus serve`), as a user types them:
a file put is read by a cell and comes back the same with get; an upload whose connection is
cut goes on where the server's copy ends; viewers cannot write; rm wants -r for a folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.api import PASSWORD
from ..support.stack import OneProgramStack
from .test_cli import CELLBUS, User

MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("cli-files-server")
    stack = OneProgramStack(logs, logs / "data", argv=[CELLBUS, "serve"])
    try:
        yield stack.urls[0]
    finally:
        stack.close()


class CuttingProxy:
    """A TCP proxy in front of the server that cuts, once, the first connection to carry more
    than `after` bytes towards it (with a reset, as a dropped network does); every other
    connection passes untouched."""

    def __init__(self, server: str, after: int) -> None:
        host, port = server.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.after = after
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sockets: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        carried = 0
        try:
            while block := source.recv(65536):
                carried += len(block)
                if counted and carried > self.after and not self.cut.is_set():
                    self.cut.set()  # both ends lose the connection mid-body
                    self._reset(source, sink)
                    return
                sink.sendall(block)
        except OSError:
            pass
        for end in (source, sink):  # also wakes the other direction's recv
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _reset(*ends: socket.socket) -> None:
        """Drop both connections with a reset, as a network that fails does (after waking the
        other direction's recv, so that closing really lets go of the socket)."""
        for end in ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            end.close()

    def close(self) -> None:
        self.listener.close()
        for end in self.sockets:
            end.close()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(MB):
            digest.update(block)
    return digest.hexdigest()


def test_put_read_in_a_cell_get_ls_and_rm(server: str, tmp_path: Path) -> None:
    ada = User(server, tmp_path, "ada-files").sign_up()
    bob = User(server, tmp_path, "bob-files").sign_up()
    ada.run("new", "Files")
    ada.run("share", "Files", "bob-files", "viewer")
    source = tmp_path / "measurements.bin"
    source.write_bytes(os.urandom(24 * MB))

    put = ada.run("files", "put", "Files", str(source), "data/", "--progress")
    assert "measurements.bin: 24.0 MB uploaded to data/measurements.bin in" in put.stderr
    assert "%" in put.stderr  # the progress line, redrawn as it went
    digest = "print(hashlib.sha256(open('data/measurements.bin','rb').read()).hexdigest())"
    ran = ada.run("exec", "Files", "import hashlib\n" + digest)
    assert ran.stdout.strip() == sha256(source)  # the cell reads what was put
    ada.run("exec", "Files", "open('data/notes.txt', 'w').write('written by a cell\\n')")

    listed = ada.run("files", "ls", "Files").stdout.splitlines()
    assert listed[0].split() == ["SIZE", "MODIFIED", "NAME"]
    assert listed[1].endswith("data/")
    inside = ada.run("files", "ls", "Files", "data").stdout
    assert "24.0 MB" in inside and "measurements.bin" in inside and "notes.txt" in inside
    assert ".cellbus" not in ada.run("files", "ls", "Files").stdout  # dot entries: with -a

    (tmp_path / "down").mkdir()
    got = bob.run("files", "get", "Files", "data/measurements.bin", str(tmp_path / "down"))
    assert sha256(tmp_path / "down" / "measurements.bin") == sha256(source)  # a viewer may
    assert got.stderr == ""  # short, and not a terminal: no progress
    assert bob.run("files", "get", "Files", "data/notes.txt", "-").stdout == "written by a cell\n"
    argv = [CELLBUS, "files", "get", "Files", "data/measurements.bin", "-"]
    with subprocess.Popen(argv, env=bob.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as cut:
        assert cut.stdout is not None and cut.stderr is not None
        assert len(cut.stdout.read(1000)) == 1000  # `| head -c 1000`: the reader goes away
        cut.stdout.close()
        assert cut.wait(timeout=60) == 141  # as a shell's own tools end on SIGPIPE
        assert cut.stderr.read() == b""  # no traceback

    refused = bob.run("files", "put", "Files", str(source), ok=False)  # a viewer may not
    assert refused.returncode == 1
    assert refused.stderr.startswith("cellbus: ") and len(refused.stderr.splitlines()) == 1
    assert bob.run("files", "rm", "Files", "data/notes.txt", ok=False).returncode == 1
    missing = ada.run("files", "get", "Files", "data/nothing.csv", ok=False)
    assert missing.returncode == 1 and "data/nothing.csv" in missing.stderr

    folder = ada.run("files", "rm", "Files", "data", ok=False)
    assert folder.returncode == 1 and "use `rm -r`" in folder.stderr
    ada.run("files", "rm", "Files", "-r", "data")
    assert "empty" in ada.run("files", "ls", "Files").stderr


def test_an_upload_cut_off_goes_on_where_the_server_copy_ends(server: str, tmp_path: Path) -> None:
    proxy = CuttingProxy(server, after=6 * MB)
    try:
        ada = User(proxy.url, tmp_path, "ada-resume").sign_up()
        ada.run("new", "Resumed")
        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(30 * MB))
        put = ada.run("-v", "files", "put", "Resumed", str(source))
        assert proxy.cut.is_set()
        assert "the connection was lost; going on from byte" in put.stderr
        resumed_at = int(put.stderr.split("going on from byte ")[1].split()[0])
        assert 0 < resumed_at < 30 * MB  # not from the start: what the server kept stayed
        ada.run("files", "get", "Resumed", "big.bin", str(tmp_path / "back.bin"))
        assert sha256(tmp_path / "back.bin") == sha256(source)
    finally:
        proxy.close()


def test_put_resume_sends_only_what_an_earlier_upload_left_out(server: str, tmp_path: Path) -> None:
    ada = User(server, tmp_path, "ada-later").sign_up()
    sheet = ada.run("new", "Later").stdout.strip()
    source = tmp_path / "half.bin"
    source.write_bytes(os.urandom(12 * MB))
    token = rpc(server, "auth.login", username="ada-later", password=PASSWORD)["token"]
    first = urllib.request.Request(  # an earlier client got this far, then stopped
        f"{server}/files/{sheet}/half.bin",
        data=source.read_bytes()[: 5 * MB],
        method="PUT",
        headers={"Authorization": f"Bearer {token}",
                 "Content-Range": f"bytes 0-{5 * MB - 1}/{12 * MB}"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as answer:  # urllib takes a 308 for an error
        urllib.request.urlopen(first, timeout=30)
    assert answer.value.code == 308
    answer.value.close()
    assert ada.run("files", "ls", "Later").stderr.strip().endswith("is empty")  # not in place

    put = ada.run("-v", "files", "put", "Later", str(source), "--resume")
    assert f"half.bin: the server has {5 * MB} bytes of it already" in put.stderr
    ada.run("files", "get", "Later", "half.bin", str(tmp_path / "whole.bin"))
    assert sha256(tmp_path / "whole.bin") == sha256(source)


def rpc(server: str, method: str, **params: object) -> dict[str, str]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    request = urllib.request.Request(
        server + "/rpc", body.encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, str] = json.load(response)["result"]
    return result
