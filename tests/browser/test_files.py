"""The files panel: a worksheet's workspace beside its cells, as a data scientist uses it.

A CSV dropped on the panel is uploaded (with a progress bar), read with pandas by a cell; a
file the cell writes appears in the panel, live, for the editor and for a viewer watching; it
downloads as it was written. Viewers get no write controls. A large file goes in chunks, and a
chunk lost on the way is sent again from where the server's copy ends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import FilePayload, Locator, Page, Route, expect

from .helpers import RUN_TIMEOUT, Person, cell, run

CSV = 'city,visitors\nOslo,120\nLima,80\n"Zürich, CH",40\n'
ANALYSE = """import pandas as pd
df = pd.read_csv('data/visits.csv')
print(df.visitors.sum())
df.assign(share=df.visitors / df.visitors.sum()).to_csv('data/shares.csv', index=False)"""
SHARES = (
    "city,visitors,share\nOslo,120,0.5\nLima,80,0.3333333333333333\n"
    '"Zürich, CH",40,0.16666666666666666\n'
)
BIG = 20 * 1024 * 1024  # bytes: three chunks of the page's uploads (8 MiB each)


def drop_files(target: Locator, files: dict[str, str | int]) -> None:
    """Drop files on `target` as a person drags them from their desktop: {name: text, or a
    size for that many bytes of a repeating pattern}, made in the page."""
    transfer = target.page.evaluate_handle(
        """files => {
             const transfer = new DataTransfer();
             for (const [name, content] of Object.entries(files)) {
               const body = typeof content === 'number'
                 ? new Uint8Array(content).map((_, i) => i % 251) : content;
               transfer.items.add(new File([body], name));
             }
             return transfer;
           }""",
        files,
    )
    target.dispatch_event("dragenter", {"dataTransfer": transfer})
    target.dispatch_event("dragover", {"dataTransfer": transfer})
    target.dispatch_event("drop", {"dataTransfer": transfer})


def entry(panel: Locator, path: str) -> Locator:
    return panel.locator(f'[data-testid="file-entry"][data-path="{path}"]')


def open_files(page: Page) -> Locator:
    page.get_by_test_id("files-toggle").click()
    panel = page.get_by_test_id("files-panel")
    expect(panel).to_be_visible()
    return panel


def test_drop_a_csv_read_it_in_a_cell_see_and_download_what_the_code_wrote(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet(ANALYSE)
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    page = ada.open(sheet)
    panel = open_files(page)
    expect(panel).to_contain_text("No files yet.")

    panel.get_by_test_id("files-new-folder").click()
    page.get_by_test_id("ask-input").fill("data")
    page.get_by_test_id("ask-ok").click()
    folder = entry(panel, "data")
    expect(folder).to_have_attribute("data-type", "directory")
    folder.get_by_role("button", name="data", exact=True).click()  # opens it
    expect(folder.get_by_role("button", name="data", exact=True)).to_have_attribute(
        "aria-expanded", "true"
    )

    drop_files(folder, {"visits.csv": CSV})  # dropped on the folder: uploaded into it
    visits = entry(panel, "data/visits.csv")
    expect(visits).to_contain_text("visits.csv")
    expect(panel.get_by_test_id("file-upload")).to_have_count(0)  # done: its bar is gone
    visits.get_by_role("button", name="visits.csv", exact=True).click()  # the preview: a table
    table = page.get_by_test_id("preview-table")
    expect(table.locator("th")).to_have_text(["city", "visitors"])
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator("tbody tr").nth(2).locator("td")).to_have_text(["Zürich, CH", "40"])
    page.screenshot(path=screenshots / "files-preview.png")
    page.get_by_test_id("preview-close").click()

    watching = open_files(bob.open(sheet))  # a viewer: sees the files, cannot change them
    expect(entry(watching, "data")).to_be_visible()
    expect(watching.get_by_test_id("files-upload")).to_be_hidden()
    expect(watching.get_by_role("button", name="Delete data")).to_have_count(0)
    expect(watching.get_by_role("button", name="Rename data")).to_have_count(0)

    run(cell(page, 0))
    expect(cell(page, 0).get_by_test_id("output-stdout")).to_have_text("240\n")
    shares = entry(panel, "data/shares.csv")  # written by the code: here without a reload
    expect(shares).to_be_visible(timeout=RUN_TIMEOUT)
    entry(watching, "data").get_by_role("button", name="data", exact=True).click()
    expect(entry(watching, "data/shares.csv")).to_be_visible()
    page.screenshot(path=screenshots / "files-panel.png")

    with page.expect_download() as download:
        shares.get_by_test_id("file-download").click()
    assert download.value.suggested_filename == "shares.csv"
    assert download.value.path().read_text(encoding="utf-8") == SHARES

    shares.get_by_role("button", name="Rename shares.csv").click()
    page.get_by_test_id("ask-input").fill("result.csv")
    page.get_by_test_id("ask-ok").click()
    expect(entry(panel, "data/result.csv")).to_be_visible()
    expect(entry(watching, "data/result.csv")).to_be_visible()  # another person's change
    expect(entry(panel, "data/shares.csv")).to_have_count(0)
    entry(panel, "data/result.csv").get_by_role("button", name="Delete result.csv").click()
    page.get_by_test_id("confirm-ok").click()
    expect(entry(watching, "data/result.csv")).to_have_count(0)
    expect(entry(panel, "data/result.csv")).to_have_count(0)


def test_a_large_upload_goes_in_chunks_a_lost_chunk_is_sent_again_and_the_upload_button(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet(
        "import hashlib\nprint(hashlib.sha256(open('big.bin','rb').read()).hexdigest())"
    )
    page = ada.open(sheet)
    ranges: list[str] = []

    def lose_the_second_chunk(route: Route) -> None:
        """The network drops the second chunk once, before the server sees it."""
        sent = route.request.headers.get("content-range", "")
        ranges.append(sent)
        if sent.startswith(f"bytes {8 * 1024 * 1024}-") and ranges.count(sent) == 1:
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/files/**", lose_the_second_chunk)
    panel = open_files(page)
    drop_files(panel, {"big.bin": BIG})
    expect(entry(panel, "big.bin")).to_contain_text("20 MB", timeout=RUN_TIMEOUT)
    expect(panel.get_by_test_id("file-upload")).to_have_count(0)
    total = f"/{BIG}"
    assert ranges[0] == f"bytes 0-{8 * 1024 * 1024 - 1}{total}"
    assert f"bytes */{BIG}" in ranges  # asked the server how much it had, then went on
    assert ranges.count(f"bytes {8 * 1024 * 1024}-{16 * 1024 * 1024 - 1}{total}") == 2

    with page.expect_file_chooser() as chooser:  # the Upload button: the system's dialog
        panel.get_by_test_id("files-upload").click()
    notes = FilePayload(name="notes.md", mimeType="text/markdown", buffer=b"# Notes\nfine\n")
    chooser.value.set_files(files=[notes])
    entry(panel, "notes.md").get_by_role("button", name="notes.md", exact=True).click()
    expect(page.get_by_test_id("preview-text")).to_have_text("# Notes\nfine\n")
    page.keyboard.press("Escape")  # closes the preview
    expect(page.get_by_test_id("preview-dialog")).to_have_count(0)
    drop_files(panel, {"notes.md": "other"})  # the same name again: asked first
    expect(page.get_by_test_id("confirm-dialog")).to_contain_text("Replace notes.md?")
    page.get_by_test_id("confirm-cancel").click()
    expect(entry(panel, "notes.md")).to_contain_text("13 bytes")  # kept as it was
    page.keyboard.press("Escape")  # the panel closes; the keyboard is back on its button
    expect(panel).to_be_hidden()
    expect(page.get_by_test_id("files-toggle")).to_be_focused()

    run(cell(page, 0))
    pattern = bytes(i % 251 for i in range(251))
    expected = hashlib.sha256((pattern * (BIG // 251 + 1))[:BIG]).hexdigest()
    expect(cell(page, 0).get_by_test_id("output-stdout")).to_have_text(expected + "\n")
