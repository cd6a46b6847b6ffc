"""Named checkpoints in the browser: Ctrl+S saves one (named after the time, asking nothing,
as JupyterLab's "Save and create checkpoint"), and restoring one shows on every open page."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import expect

from .helpers import Person, cell, editor, sources, type_into, wait_saved


def test_ctrl_s_saves_a_checkpoint_that_a_restore_brings_back_on_every_page(
    person: Callable[..., Person],
) -> None:
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet("a = 1")
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    page, other = ada.open(sheet), bob.open(sheet)
    type_into(cell(page, 0), "a = 2")
    editor(cell(page, 0)).press("Control+s")  # straight after typing: the edit is in it
    expect(page.get_by_test_id("toast")).to_contain_text("Checkpoint saved")
    [saved] = ada.api.call("worksheet.checkpoints", id=sheet["id"])
    assert re.fullmatch(r"Checkpoint \d\d:\d\d", saved["name"]), saved["name"]
    assert saved["username"] == ada.username

    type_into(cell(page, 0), "a = 3")
    wait_saved(page)
    expect(editor(cell(other, 0))).to_have_text("a = 3")
    restored = bob.api.call("worksheet.restore_checkpoint", id=sheet["id"], checkpoint=saved["id"])
    assert restored["changed"] is True
    for shown in (page, other):  # live, on both pages
        expect(editor(cell(shown, 0))).to_have_text("a = 2")
    assert sources(page) == sources(other) == ["a = 2"]
