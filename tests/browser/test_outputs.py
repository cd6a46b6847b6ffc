"""Running cells: outputs as they stream, every kind of output, the cell's and the session's
state. Code that must hold a cell mid-run waits for a gate file the test creates."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from .helpers import RUN_TIMEOUT, Person, cell, editor, run

DOCS = Path(__file__).resolve().parents[2] / "docs"

STREAMING = """import os, time
print("first line", flush=True)
while not os.path.exists({gate!r}):
    time.sleep(0.02)
print("second line")"""

RICH = r"""import struct, sys, zlib
from IPython.display import HTML, JSON, SVG, Image, Markdown, display

def png(width, height, rgb):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))

print("\x1b[31mwarning: in red\x1b[0m", file=sys.stderr)
display(Markdown("## Results\n\nThe *mean* is `4.2`."))
display(Image(data=png(48, 24, (46, 134, 222))))
display(JSON({"answer": 42, "items": [1, 2]}))
display(HTML("<p id='greeting'>Hello <b>HTML</b></p>"
             "<script>document.getElementById('greeting').dataset.ran = 'yes'</script>"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40">'
            '<circle id="dot" cx="20" cy="20" r="15" fill="tomato"/></svg>'))
6 * 7"""

UPDATES = """import os, time
from IPython.display import clear_output, display
print("gone soon")
clear_output()
handle = display("step 1", display_id=True)
while not os.path.exists({gate!r}):
    time.sleep(0.02)
handle.update("step 2")
print("a")
clear_output(wait=True)
print("b")"""


def test_outputs_stream_while_a_cell_runs_and_it_shows_state_count_who_and_time(
    person: Callable[..., Person], tmp_path: Path
) -> None:
    ada = person("ada")
    gate = tmp_path / "gate"
    page = ada.open(ada.api.worksheet(STREAMING.format(gate=str(gate))))
    first = cell(page, 0)
    session = page.get_by_test_id("session-state")
    expect(session).to_have_attribute("data-state", "stopped")  # no process until first use
    editor(first).press("Shift+Enter")
    stdout = first.get_by_test_id("output-stdout")
    expect(stdout).to_have_text("first line\n", timeout=RUN_TIMEOUT)
    expect(first).to_have_attribute("data-state", "running")  # still running: the gate is shut
    expect(first.get_by_test_id("cell-state")).to_have_text("running")
    expect(first.get_by_test_id("cell-count")).to_have_text("[*]")
    expect(session).to_have_attribute("data-state", "busy")
    gate.touch()
    expect(first).to_have_attribute("data-state", "done")
    expect(stdout).to_have_text("first line\nsecond line\n")
    expect(first.get_by_test_id("cell-count")).to_have_text("[1]")
    expect(first.get_by_test_id("cell-run-by")).to_have_text(f"run by {ada.username}")
    expect(first.get_by_test_id("cell-duration")).to_have_text(re.compile(r"^\d+(\.\d+)? m?s$"))
    expect(session).to_have_attribute("data-state", "idle")
    page.reload()  # the outputs were saved on the server, with who ran the cell
    expect(first.get_by_test_id("output-stdout")).to_have_text("first line\nsecond line\n")
    expect(first.get_by_test_id("cell-run-by")).to_have_text(f"run by {ada.username}")


def test_every_kind_of_output_is_shown(
    person: Callable[..., Person], tmp_path: Path, screenshots: Path
) -> None:
    ada = person("ada")
    gate = tmp_path / "gate"
    page = ada.open(ada.api.worksheet(RICH, UPDATES.format(gate=str(gate)), "x = 1\n1 / 0"))
    rich, updates, failing = cell(page, 0), cell(page, 1), cell(page, 2)

    run(rich)
    red = rich.get_by_test_id("output-stderr").locator("span.ansi-red-fg")
    expect(red).to_have_text("warning: in red")
    assert red.evaluate("e => getComputedStyle(e).color") == "rgb(180, 35, 35)"  # --ansi-red
    markdown = rich.get_by_test_id("output-markdown")
    expect(markdown.locator("h2")).to_have_text("Results")
    expect(markdown.locator("em")).to_have_text("mean")
    image = rich.get_by_test_id("output-image")
    expect(image).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    assert image.evaluate("img => img.complete && img.naturalWidth") == 48
    expect(rich.get_by_test_id("output-json")).to_contain_text('"answer": 42')
    frames = rich.get_by_test_id("sandbox-frame")
    expect(frames).to_have_count(2)
    html, svg = rich.frame_locator("iframe").nth(0), rich.frame_locator("iframe").nth(1)
    expect(html.locator("#greeting")).to_have_text("Hello HTML")
    expect(html.locator("#greeting")).to_have_attribute("data-ran", "yes")  # its script ran
    expect(svg.locator("#dot")).to_have_attribute("fill", "tomato")
    expect(rich.get_by_test_id("output-text").last).to_have_text("42")  # the execute_result
    assert frames.first.evaluate("f => f.getBoundingClientRect().height") > 15  # sized to fit

    editor(updates).press("Shift+Enter")
    outputs = updates.get_by_test_id("output")
    expect(outputs).to_have_count(1, timeout=RUN_TIMEOUT)
    expect(outputs).to_have_text("'step 1'")  # "gone soon" was cleared
    gate.touch()
    expect(updates).to_have_attribute("data-state", "done")
    expect(updates.get_by_test_id("output")).to_have_text(["b\n"])  # updated, then cleared

    run(failing, "error")
    error = failing.get_by_test_id("output-error")
    expect(error).to_have_attribute("data-ename", "ZeroDivisionError")
    expect(error).to_contain_text("Traceback")
    expect(error).to_contain_text("ZeroDivisionError: division by zero")
    expect(failing.get_by_test_id("cell-state")).to_have_text("error")
    page.set_viewport_size({"width": 1280, "height": 1800})
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    page.screenshot(path=screenshots / "worksheet-outputs.png")


def test_the_readme_screenshot(person: Callable[..., Person], screenshots: Path) -> None:
    """A worksheet as a newcomer would first see one, two people on it, for README.md."""
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet(
        {
            "cell_type": "markdown",
            "source": "## Orbits\nPeriods of the inner planets, from Kepler's third law: "
            "$T^2 \\propto a^3$.",
        },
        "AU = {'Mercury': 0.387, 'Venus': 0.723, 'Earth': 1.0, 'Mars': 1.524}\n"
        "years = {name: a ** 1.5 for name, a in AU.items()}\n"
        "for name, t in years.items():\n    print(f'{name:8} {t:6.3f} years')",
        "from IPython.display import HTML\n"
        "rows = ''.join(f'<tr><td>{n}</td><td>{t * 365.25:.0f}</td></tr>'\n"
        "               for n, t in years.items())\n"
        "HTML(f'<table><tr><th>planet</th><th>days</th></tr>{rows}</table>')",
        "years['Mars'] / years['Earth']",
        title="Kepler's third law",
    )
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    bob.open(sheet)
    page = ada.open(sheet)
    page.get_by_test_id("run-all").click()
    expect(cell(page, 3)).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)
    expect(cell(page, 2).frame_locator("iframe").locator("td").first).to_have_text("Mercury")
    expect(cell(page, 2).get_by_test_id("output")).to_have_attribute("data-rendered", "true")
    expect(page.get_by_test_id("presence-user")).to_have_count(2)
    page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
    path = screenshots / "worksheet.png"
    page.screenshot(path=path)
    shutil.copyfile(path, DOCS / "screenshot-worksheet.png")
