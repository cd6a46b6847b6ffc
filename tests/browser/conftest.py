"""Fixtures of the browser tests: the real services, Debian's Chromium, signed-in people.

One `ServicesStack` (accounts, a kernel worker and two web processes on the real Redis and
PostgreSQL) serves every test of the run; each test makes its own users and worksheets, so
tests do not see each other's data. Playwright's sync API drives ``/usr/bin/chromium``
(never a downloaded browser); each person gets a browser context of their own, so two
people are two separate sessions with their own cookies, as on two computers.

The fixtures are package-scoped, not session-scoped: while Playwright's sync API is open it
holds an event loop running in the main thread, and every asyncio test after it would fail
("Runner.run() cannot be called from a running event loop"). They end with this folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from ..support.stack import ServicesStack
from .helpers import Person, register

CHROMIUM = "/usr/bin/chromium"
# Chromium's own background traffic is refused by this machine's closed network; keep it quiet.
CHROMIUM_ARGS = [
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic", "--disable-features=Translate,MediaRouter",
]  # fmt: skip
FRONTEND = Path(__file__).resolve().parents[2] / "frontend" / "web" / "dist" / "index.html"


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicesStack]:
    if not FRONTEND.is_file():
        pytest.fail("the browser app is not built: run `make frontend` (make test does)")
    with ServicesStack(tmp_path_factory.mktemp("browser-logs")) as system:
        yield system


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no {CHROMIUM}: run `make browser` (make test does)")
    instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield instance
    instance.close()


@pytest.fixture(scope="package")
def screenshots(artifacts: Path) -> Path:
    folder = artifacts / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def person(stack: ServicesStack, browser: Browser) -> Iterator[Callable[..., Person]]:
    """Makes people: ``person("ada")`` registers ada-xxxxxx through the API and opens a
    signed-in browser context for her on web process `web` (0 or 1)."""
    made: list[Person] = []

    def make(name: str = "user", web: int = 0) -> Person:
        someone = register(stack.urls[web], name, browser)
        made.append(someone)
        return someone

    yield make
    for someone in made:
        someone.close()
    errors = [f"{someone.username}: {error}" for someone in made for error in someone.errors]
    assert not errors, f"the app's scripts failed: {errors}"
