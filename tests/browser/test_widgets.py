"""ipywidgets in the browser: drawn in the sandboxed output frame, and shared. When one person
moves a slider, it moves on everyone's screen, and the kernel gets one update per change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import FrameLocator, Locator, expect

from .helpers import RUN_TIMEOUT, Person, cell, run

SLIDER = """import ipywidgets as widgets
s = widgets.IntSlider(value=5, max=10, description='Size')
changes = []
s.observe(lambda change: changes.append(change['new']), 'value')
s"""


def widget(cell_: Locator) -> FrameLocator:
    """The frame that draws the cell's widget output."""
    expect(cell_.get_by_test_id("sandbox-frame")).to_be_visible(timeout=RUN_TIMEOUT)
    return cell_.frame_locator("iframe[sandbox='allow-scripts']")


def readout(cell_: Locator) -> Locator:
    """The number a slider shows beside it."""
    return widget(cell_).locator(".widget-readout")


def test_a_slider_moved_by_one_person_moves_for_everyone_and_in_the_kernel(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob, carol = person("ada"), person("bob", web=1), person("carol")
    sheet = ada.api.worksheet(SLIDER, "print(s.value, changes)")
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    ada.api.call("worksheet.share", id=sheet["id"], username=carol.username, role="viewer")
    mine, theirs = ada.open(sheet), bob.open(sheet)
    run(cell(mine, 0))  # bob watches it appear (the comm opens while his page follows)

    expect(readout(cell(mine, 0))).to_have_text("5")
    expect(readout(cell(theirs, 0))).to_have_text("5")
    expect(widget(cell(theirs, 0)).locator(".widget-label")).to_have_text("Size")

    handle = widget(cell(mine, 0)).locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")  # one change, then another
    expect(readout(cell(theirs, 0))).to_have_text("6")
    handle.press("ArrowRight")
    expect(readout(cell(theirs, 0))).to_have_text("7")
    expect(readout(cell(mine, 0))).to_have_text("7")

    run(cell(mine, 1))  # the kernel's slider: one update per change, none sent back twice
    expect(cell(mine, 1).get_by_test_id("output-stdout")).to_have_text("7 [6, 7]\n")

    # carol, a viewer, opens the page after the widget was made: she sees it as it is now,
    # moving when bob moves it, but cannot move it herself
    watching = cell(carol.open(sheet), 0)
    expect(readout(watching)).to_have_text("7")
    bobs = widget(cell(theirs, 0)).locator(".noUi-handle")
    bobs.focus()
    bobs.press("ArrowLeft")
    expect(readout(watching)).to_have_text("6")
    expect(readout(cell(mine, 0))).to_have_text("6")
    expect(widget(watching).locator("#root")).to_have_js_property("inert", True)
    run(cell(mine, 1))
    expect(cell(mine, 1).get_by_test_id("output-stdout")).to_have_text("6 [6, 7, 6]\n")
    carol.page.screenshot(path=screenshots / "widgets.png")
    expect(carol.page.get_by_test_id("toast")).to_have_count(0)  # her page sent no edit


FORGER = """from IPython.display import HTML
HTML('''<script>
parent.postMessage({cellbus: "comm_send", ref: "forged", comm_id: "%s", kind: "msg",
                    data: {method: "update", state: {value: 0}, buffer_paths: []}}, "*");
document.write("<p id='sent'>sent</p>");
</script>''' % s.model_id)"""


def test_an_html_output_cannot_move_a_widget_through_the_app(person: Callable[..., Person]) -> None:
    """HTML from user code runs in a frame of its own, as a widget does, and can post the very
    message a widget frame posts; the app takes comm messages only from widget frames."""
    ada = person("ada")
    page = ada.open(ada.api.worksheet(SLIDER, FORGER, "print(s.value, changes)"))
    run(cell(page, 0))
    expect(readout(cell(page, 0))).to_have_text("5")
    run(cell(page, 1))
    expect(widget(cell(page, 1)).locator("#sent")).to_have_text("sent")
    run(cell(page, 2))
    expect(cell(page, 2).get_by_test_id("output-stdout")).to_have_text("5 []\n")
    expect(readout(cell(page, 0))).to_have_text("5")


INTERACT = """from ipywidgets import interact
@interact(x=(0, 10))
def square(x=3):
    print('square', x * x)"""


def test_interact_shows_its_output_in_the_widget_for_everyone(
    person: Callable[..., Person],
) -> None:
    """`interact` prints into an Output widget (Jupyter's capture of a request's outputs):
    inside the widget on every page, not under the cell, as the slider moves."""
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet(INTERACT)
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    mine, theirs = cell(ada.open(sheet), 0), cell(bob.open(sheet), 0)
    run(mine)
    shown = widget(mine).locator(".widget-output")
    expect(shown).to_have_text("square 9")
    expect(widget(theirs).locator(".widget-output")).to_have_text("square 9")
    expect(mine.get_by_test_id("output-stdout")).to_have_count(0)  # not under the cell

    handle = widget(mine).locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")  # the callback runs for the comm message, printing again
    expect(shown).to_have_text("square 16")
    expect(widget(theirs).locator(".widget-output")).to_have_text("square 16")
    expect(theirs.get_by_test_id("output-stdout")).to_have_count(0)

    # A page opened afresh: the saved cell holds the widget, not what the widget captured.
    later = cell(ada.open(sheet), 0)
    expect(widget(later).locator(".widget-output")).to_have_text("square 16")
    expect(later.get_by_test_id("output-stdout")).to_have_count(0)


def test_a_widget_the_kernel_forgot_in_a_restart_shows_as_text_on_a_page_opened_later(
    person: Callable[..., Person],
) -> None:
    """A restart (a ``session_state`` ``restarting`` on the feed) ends every comm: a page
    opened afterwards reads the feed's history and draws no slider that nothing moves."""
    ada = person("ada")
    sheet = ada.api.worksheet(SLIDER)
    run(cell(ada.open(sheet), 0))
    expect(readout(cell(ada.page, 0))).to_have_text("5")
    ada.api.call("session.restart", session=sheet["session"])
    later = cell(ada.open(sheet), 0)
    expect(widget(later).locator(".widget-fallback")).to_contain_text("IntSlider(value=5")
    expect(widget(later).locator(".widget-readout")).to_have_count(0)
