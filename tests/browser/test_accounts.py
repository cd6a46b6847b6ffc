"""Signing up, logging in and out, and the worksheet list: create, rename, share, delete."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, expect

from ..support.api import PASSWORD
from ..support.stack import ServicesStack
from .helpers import Person, new_context


def test_register_log_out_and_log_in_through_the_page(
    stack: ServicesStack, browser: Browser, screenshots: Path
) -> None:
    context = new_context(browser)
    page = context.new_page()
    username = f"carol-{uuid.uuid4().hex[:6]}"
    page.goto(stack.urls[0] + "/")
    expect(page.get_by_test_id("login-page")).to_be_visible()
    page.screenshot(path=screenshots / "login.png")
    page.get_by_test_id("login-switch").click()
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("worksheets-page")).to_be_visible()
    expect(page.get_by_test_id("user-name")).to_have_text(username)
    expect(page.get_by_test_id("no-worksheets")).to_be_visible()
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["cellbus_session"]["httpOnly"]
    assert page.evaluate("document.cookie") == ""  # the token is out of the page's reach
    assert page.evaluate("Object.keys(localStorage).length") == 0

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-page")).to_be_visible()
    page.reload()
    expect(page.get_by_test_id("login-page")).to_be_visible()  # the cookie is gone for good

    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill("not the password")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("password")
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("user-name")).to_have_text(username)
    context.close()


def test_a_worksheet_link_works_after_signing_in(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("1 + 1", title="Linked")
    ada.context.clear_cookies()
    ada.page.goto(f"{ada.url}/w/{sheet['id']}")
    ada.page.get_by_test_id("login-username").fill(ada.username)
    ada.page.get_by_test_id("login-password").fill(PASSWORD)
    ada.page.get_by_test_id("login-submit").click()
    expect(ada.page.get_by_test_id("worksheet-title")).to_have_text("Linked")
    assert ada.page.url.endswith(f"/w/{sheet['id']}")


def test_the_worksheet_list_creates_renames_shares_and_deletes(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob = person("ada"), person("bob")
    theirs = bob.api.worksheet(title="Bob's analysis")
    bob.api.call("worksheet.share", id=theirs["id"], username=ada.username, role="viewer")
    page = ada.page
    page.goto(ada.url + "/")
    rows = page.get_by_test_id("worksheet-row")
    expect(rows).to_have_count(1)
    shared = rows.filter(has_text="Bob's analysis")
    expect(shared.get_by_test_id("worksheet-role")).to_have_text("viewer")
    expect(shared.get_by_test_id("rename-worksheet")).to_be_disabled()
    expect(shared.get_by_test_id("delete-worksheet")).to_have_attribute(
        "title", re.compile("owner")
    )

    page.get_by_test_id("new-worksheet-title").fill("Quarterly numbers")
    page.get_by_test_id("new-worksheet").click()
    expect(page.get_by_test_id("worksheet-title")).to_have_text("Quarterly numbers")
    assert re.search(r"/w/[0-9a-f-]{36}$", page.url)
    expect(page.get_by_test_id("cell")).to_have_count(1)  # a new worksheet starts with a cell
    page.get_by_test_id("home").click()

    mine = rows.filter(has_text="Quarterly numbers")
    expect(rows).to_have_count(2)
    page.screenshot(path=screenshots / "worksheet-list.png")
    mine.get_by_test_id("rename-worksheet").click()
    page.get_by_test_id("ask-input").fill("Yearly numbers")
    page.get_by_test_id("ask-ok").click()
    mine = rows.filter(has_text="Yearly numbers")
    expect(mine).to_have_count(1)

    mine.get_by_test_id("share-worksheet").click()
    dialog = page.get_by_test_id("share-dialog")
    dialog.get_by_test_id("share-username").fill(bob.username)
    dialog.get_by_test_id("share-role").select_option("editor")
    dialog.get_by_test_id("share-submit").click()
    member = dialog.locator(f"[data-testid=share-member][data-username='{bob.username}']")
    expect(member).to_have_attribute("data-role", "editor")
    dialog.get_by_test_id("share-done").click()
    bobs = {s["title"]: s["role"] for s in bob.api.call("worksheet.list")}
    assert bobs["Yearly numbers"] == "editor"

    mine.get_by_test_id("delete-worksheet").click()
    page.get_by_test_id("confirm-ok").click()
    expect(rows).to_have_count(1)
    assert [s["title"] for s in ada.api.call("worksheet.list")] == ["Bob's analysis"]
