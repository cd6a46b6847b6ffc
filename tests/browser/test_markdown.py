"""Markdown cells rendered in the browser (math, attachments, nothing unsafe), edited on
double-click or Enter and shown again on Shift+Enter; raw cells left as they are."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import nbformat
from playwright.sync_api import expect

from .helpers import Person, cell, cells, editor, rendered, sources, type_into, wait_saved

NOTES = r"""# Orbits

Kepler: $T^2 \propto a^3$, with *a* in AU.

$$
\int_0^1 x^2 \, dx = \frac{1}{3}
$$

| planet | a |
|---|---|
| Mars | 1.524 |

<script>window.pwned = true</script><img src="x" onerror="window.pwned = true">
<iframe src="/"></iframe><a href="javascript:window.pwned = true">a link</a>
<form action="/rpc"><button>go</button></form>"""


def markdown(source: str) -> dict[str, str]:
    return {"cell_type": "markdown", "source": source}


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x2e\x86\xde" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def test_markdown_with_math_renders_safely_and_is_edited_in_place(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet(markdown(NOTES), "x = 1")
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    page, theirs = ada.open(sheet), bob.open(sheet)
    notes = cell(page, 0)
    shown = rendered(notes)
    expect(shown.locator("h1")).to_have_text("Orbits")
    expect(shown.locator("em")).to_have_text("a")  # not the math's
    expect(shown.locator(".katex")).to_have_count(2)  # typeset by KaTeX, inline and displayed
    expect(shown.locator(".katex-display")).to_have_count(1)
    expect(shown.locator("table td").first).to_have_text("Mars")
    expect(editor(notes)).to_be_hidden()
    expect(notes.get_by_test_id("cell-count")).to_be_hidden()  # never run
    for unsafe in ("script", "iframe", "form", "button", "[onerror]", "a[href^='javascript']"):
        expect(shown.locator(unsafe)).to_have_count(0)
    assert page.evaluate("window.pwned") is None
    page.screenshot(path=screenshots / "markdown.png")

    shown.dblclick()  # double-click: the source, to edit
    expect(editor(notes)).to_be_visible()
    expect(shown).to_be_hidden()
    box = editor(notes)
    box.press("ControlOrMeta+End")
    box.press_sequentially("\n\nAnd $e^{i\\pi} = -1$.")
    box.press("Shift+Enter")  # shown again, with the new line
    expect(shown.locator(".katex")).to_have_count(3)
    expect(editor(cell(page, 1))).to_be_focused()  # and on to the next cell
    expect(rendered(cell(theirs, 0)).locator(".katex")).to_have_count(3)  # live for bob
    expect(cell(page, 1)).to_have_attribute("data-state", "idle")  # nothing was run

    shown.focus()
    page.keyboard.press("Enter")  # Enter on the rendering edits it too
    expect(editor(notes)).to_be_focused()
    editor(notes).press("ControlOrMeta+Enter")  # rendered, staying here
    expect(shown).to_be_visible()
    wait_saved(page)
    assert ada.api.cells(sheet["id"])[0]["source"].endswith("\n\nAnd $e^{i\\pi} = -1$.")


def test_attachments_show_and_raw_cells_stay_raw(
    person: Callable[..., Person], tmp_path: Path
) -> None:
    ada = person("ada")
    image = base64.b64encode(png(30, 12)).decode()
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(
                "A picture: ![blue](attachment:blue.png)",
                attachments={"blue.png": {"image/png": image}},
            ),
            nbformat.v4.new_raw_cell(
                "**not bold** $not math$\n<b>not html</b>", metadata={"raw_mimetype": "text/html"}
            ),
            nbformat.v4.new_raw_cell(".. note:: reST", metadata={"format": "text/x-rst"}),
        ]
    )
    path = tmp_path / "attached.ipynb"
    path.write_text(nbformat.writes(notebook))
    page = ada.page
    page.goto(ada.url + "/")
    with page.expect_file_chooser() as chooser:
        page.get_by_test_id("import-notebook").click()
    chooser.value.set_files(path)
    expect(cells(page)).to_have_count(3)

    picture = rendered(cell(page, 0)).locator("img")
    expect(picture).to_have_attribute("src", f"data:image/png;base64,{image}")
    expect(picture).to_have_js_property("naturalWidth", 30)  # the image decoded and shown

    raw = cell(page, 1)
    expect(raw).to_have_attribute("data-cell-type", "raw")
    expect(raw.get_by_test_id("raw-cell")).to_have_text("Raw · text/html")
    expect(cell(page, 2).get_by_test_id("raw-cell")).to_have_text("Raw · text/x-rst")
    expect(rendered(raw)).to_be_hidden()  # the text as it is: not Markdown, HTML or math
    expect(raw.locator("b, strong, .katex")).to_have_count(0)
    assert sources(page)[1:] == ["**not bold** $not math$\n<b>not html</b>", ".. note:: reST"]
    editor(raw).press("Shift+Enter")  # never run
    page.get_by_test_id("run-all").click()
    expect(raw).to_have_attribute("data-state", "idle")
    expect(raw.get_by_test_id("output")).to_have_count(0)
    type_into(raw, "still raw")
    wait_saved(page)
    sheet = page.url.rsplit("/", 1)[-1]
    saved = ada.api.cells(sheet)[1]
    assert (saved["cell_type"], saved["source"]) == ("raw", "still raw")
    assert saved["metadata"]["raw_mimetype"] == "text/html"
