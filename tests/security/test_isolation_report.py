"""Where the kernel cannot sandbox user code, cellbus says so and stays a one-person system."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cellbus_allinone.serve import Program, Stack
from cellbus_kernel import sandbox
from cellbus_protocol.isolation import Level

from ..support.api import PASSWORD, Client
from ..support.stack import free_port
from .conftest import Target


def test_the_level_follows_what_the_kernel_enforces() -> None:
    assert sandbox.Isolation(abi=0, unix_sockets=True).level is Level.NONE
    partial = sandbox.Isolation(abi=4, unix_sockets=True)
    assert partial.level is Level.PARTIAL
    assert partial.missing == ["signals", "abstract-sockets"]
    assert "not enforced here: signals, abstract-sockets" in partial.describe()
    no_seccomp = sandbox.Isolation(abi=7, unix_sockets=False)
    assert (no_seccomp.level, no_seccomp.missing) == (Level.PARTIAL, ["unix-sockets"])
    assert sandbox.Isolation(abi=7, unix_sockets=True).level is Level.FULL


@pytest.mark.parametrize("target", ["one-program", "services"], indirect=True)
async def test_healthz_reports_full_isolation_on_this_machine(target: Target) -> None:
    async with aiohttp.ClientSession() as http, http.get(target.url + "/healthz") as response:
        health = await response.json()
    assert health["isolation"] == "full"
    assert "isolation_missing" not in health


async def serve_unsandboxed(
    data: Path, monkeypatch: pytest.MonkeyPatch, **environ: str
) -> AsyncIterator[str]:
    """`cellbus serve` in this process, its kernel worker believing it has no Landlock."""
    monkeypatch.setattr(sandbox, "probe", lambda: sandbox.Isolation(abi=0, unix_sockets=True))
    port = free_port()
    env = {"CELLBUS_DATA_DIR": str(data), "CELLBUS_PORT": str(port), **environ}
    program = Program(Stack.from_env(env))
    started = asyncio.Event()
    run = asyncio.create_task(program.run(started))
    await started.wait()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        program.stop()
        await run


@pytest.fixture
async def unsandboxed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    async for url in serve_unsandboxed(tmp_path, monkeypatch):
        yield url


async def test_without_landlock_healthz_says_none_and_a_second_account_is_refused(
    unsandboxed: str,
) -> None:
    async with aiohttp.ClientSession() as http, http.get(unsandboxed + "/healthz") as response:
        assert (await response.json())["isolation"] == "none"
    client = Client(unsandboxed)
    try:
        await client.call("auth.register", username="owner", password=PASSWORD)  # the first: ok
        refused = await client.error("auth.register", username="second", password=PASSWORD)
        assert "cannot sandbox user code" in refused.message
        assert "CELLBUS_ALLOW_UNSANDBOXED" in refused.message
    finally:
        await client.close()


async def test_an_administrator_may_allow_more_accounts_without_landlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async for url in serve_unsandboxed(tmp_path, monkeypatch, CELLBUS_ALLOW_UNSANDBOXED="true"):
        client = Client(url)
        try:
            for name in ("owner", "second"):
                await client.call("auth.register", username=name, password=PASSWORD)
        finally:
            await client.close()
