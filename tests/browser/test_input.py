"""``input()`` and ``getpass()`` answered in the browser: the person who ran the cell gets a
box under it (masked for getpass), everyone else sees whom the session waits for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from .helpers import RUN_TIMEOUT, Person, cell, editor, eventually

ASKS = """name = input('Name? ')
from getpass import getpass
secret = getpass('Secret: ')
print('hi', name, len(secret))"""


def test_input_and_getpass_are_answered_by_whoever_ran_the_cell(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet(ASKS)
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    mine, theirs = cell(ada.open(sheet), 0), cell(bob.open(sheet), 0)

    editor(mine).press("Shift+Enter")
    box = mine.get_by_test_id("stdin-input")
    expect(box).to_be_visible(timeout=RUN_TIMEOUT)
    expect(box).to_have_attribute("type", "text")
    expect(mine.get_by_test_id("cell-stdin")).to_contain_text("Name?")
    expect(mine).to_have_attribute("data-state", "running")
    waiting = theirs.get_by_test_id("stdin-waiting")  # bob cannot answer: he did not run it
    expect(waiting).to_have_text(f"The session waits for input from {ada.username}: Name? ")
    expect(theirs.get_by_test_id("stdin-input")).to_have_count(0)
    ada.page.screenshot(path=screenshots / "input-asked.png")
    bob.page.screenshot(path=screenshots / "input-waiting.png")

    late = ada.context.new_page()  # a page opened while the session waits has the box too
    late.goto(f"{ada.url}/w/{sheet['id']}")
    expect(cell(late, 0).get_by_test_id("stdin-input")).to_be_visible()
    late.close()

    box.fill("Ada")
    box.press("Enter")
    secret = mine.get_by_test_id("stdin-input")
    expect(secret).to_have_attribute("type", "password")  # getpass: masked
    expect(mine.get_by_test_id("output-stdin")).to_have_text("Name? Ada\n")
    expect(waiting).to_contain_text("Secret:")
    secret.fill("s3cret")
    secret.press("Enter")

    expect(mine).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)
    expect(mine.get_by_test_id("output-stdout")).to_have_text("hi Ada 6\n")
    expect(theirs.get_by_test_id("output-stdout")).to_have_text("hi Ada 6\n")
    expect(mine.get_by_test_id("cell-stdin")).to_be_hidden()
    expect(theirs.get_by_test_id("cell-stdin")).to_be_hidden()
    # the password is never shown, and what was typed is not saved with the outputs
    expect(mine.get_by_test_id("output-stdin")).to_have_text("Name? Ada\nSecret: ········\n")

    def saved() -> bool:
        """the run's outputs, as the server saved them: its print only"""
        outputs = ada.api.cells(sheet["id"])[0]["outputs"]
        return [output.get("text") for output in outputs] == ["hi Ada 6\n"]

    eventually(saved)


def test_an_interrupt_ends_the_wait_for_input(person: Callable[..., Person]) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet("input('Never answered: ')"))
    waiting = cell(page, 0)
    editor(waiting).press("Shift+Enter")
    expect(waiting.get_by_test_id("stdin-input")).to_be_visible(timeout=RUN_TIMEOUT)
    page.get_by_test_id("interrupt").click()
    expect(waiting).to_have_attribute("data-state", "error", timeout=RUN_TIMEOUT)
    expect(waiting.get_by_test_id("output-error")).to_have_attribute(
        "data-ename", "KeyboardInterrupt"
    )
    expect(waiting.get_by_test_id("cell-stdin")).to_be_hidden()
