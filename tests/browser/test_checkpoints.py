"""Named checkpoints in the browser: Ctrl+S saves one (named after the time, asking nothing,
as JupyterLab's "Save and create checkpoint"), and restoring one shows on every open page."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import expect

from .helpers import Person, cell, editor, palette_run, sources, type_into, wait_saved


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


def test_the_checkpoints_dialog_saves_lists_restores_and_deletes(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("a = 1")
    page = ada.open(sheet)
    dialog = page.get_by_test_id("checkpoints-dialog")

    palette_run(page, "checkpoints")  # the palette's command, also in the sheet bar's menu
    expect(dialog.get_by_test_id("checkpoint-status")).to_have_text("No checkpoints yet.")
    dialog.get_by_test_id("checkpoint-save").click()
    expect(dialog.get_by_test_id("checkpoint")).to_have_count(1)
    expect(dialog.get_by_test_id("checkpoint-name")).to_have_text(
        re.compile(r"Checkpoint \d\d:\d\d")
    )
    expect(dialog.get_by_test_id("checkpoint")).to_contain_text(ada.username)
    expect(dialog.get_by_test_id("checkpoint-status")).to_be_hidden()
    expect(page.get_by_test_id("toast").last).to_contain_text("Checkpoint saved")
    dialog.get_by_test_id("checkpoints-close").click()
    expect(dialog).to_have_count(0)

    type_into(cell(page, 0), "a = 2")
    wait_saved(page)
    palette_run(page, "checkpoints")
    dialog.get_by_test_id("checkpoint-restore").click()
    page.get_by_test_id("confirm-ok").click()
    expect(dialog).to_have_count(0)  # restored: the dialog is done
    expect(editor(cell(page, 0))).to_have_text("a = 1")  # live, on the page
    wait_saved(page)
    assert ada.api.cells(sheet["id"])[0]["source"] == "a = 1"
    page.keyboard.press("Escape")
    page.keyboard.press("z")  # the restore was this person's own edit: undone as one
    expect(editor(cell(page, 0))).to_have_text("a = 2")
    wait_saved(page)
    assert ada.api.cells(sheet["id"])[0]["source"] == "a = 2"

    palette_run(page, "checkpoints")
    dialog.get_by_test_id("checkpoint-delete").click()
    expect(dialog.get_by_test_id("checkpoint")).to_have_count(0)
    expect(dialog.get_by_test_id("checkpoint-status")).to_have_text("No checkpoints yet.")
    assert ada.api.call("worksheet.checkpoints", id=sheet["id"]) == []
    dialog.get_by_test_id("checkpoints-close").click()


def test_a_viewer_sees_the_checkpoints_but_no_way_to_change_them(
    person: Callable[..., Person],
) -> None:
    ada, carol = person("ada"), person("carol")
    sheet = ada.api.worksheet("a = 1")
    ada.api.call("worksheet.checkpoint", id=sheet["id"], name="Ada's")
    ada.api.call("worksheet.share", id=sheet["id"], username=carol.username, role="viewer")
    page = carol.open(sheet)
    palette_run(page, "checkpoints")
    dialog = page.get_by_test_id("checkpoints-dialog")
    expect(dialog.get_by_test_id("checkpoint-name")).to_have_text("Ada's")
    expect(dialog.get_by_test_id("checkpoint-restore")).to_be_disabled()
    expect(dialog.get_by_test_id("checkpoint-delete")).to_be_disabled()
    expect(dialog.get_by_test_id("checkpoint-save")).to_have_count(0)
    dialog.get_by_test_id("checkpoints-close").click()
    page.keyboard.press("Control+s")  # a viewer's write keys do nothing, as in command mode
    expect(page.get_by_test_id("toast")).to_have_count(0)
    assert [c["name"] for c in ada.api.call("worksheet.checkpoints", id=sheet["id"])] == ["Ada's"]
