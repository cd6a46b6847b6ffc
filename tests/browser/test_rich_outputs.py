"""Rich outputs as JupyterLab shows them: LaTeX typeset by KaTeX, JSON as a tree that collapses,
HTML with scripts sized to its content in its sandboxed frame (and following it), JavaScript run
in that frame only, and the inspect and help panels readable in the light and the dark theme."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from playwright.sync_api import Locator, Page, expect

from .helpers import Person, cell, editor, run

SCHEMES: list[Literal["light", "dark"]] = ["light", "dark"]

LATEX = r"""from IPython.display import Latex, Markdown, Math, display
display(Math(r"\int_0^1 x^2\,dx = \frac{1}{3}"))
display(Latex(r"The energy $E$ of a mass \(m\): $$E = mc^2$$ and \begin{align}a &= b\end{align}"))
display(Markdown(r"Inline $\alpha^2$ and displayed $$\sum_{i=1}^n i$$"))
display(Math(r"\frac{1"))"""

JSON_TREE = """from IPython.display import JSON, display
display(JSON({"answer": 42, "items": [1, "two", {"deep": True}], "none": None}))
display(JSON({"a": {"b": {"c": [1]}}}, expanded=True))"""

SCRIPTED_HTML = """%%html
<p id="first">Before the script's content</p>
<button id="grow" onclick="tall.style.height = '600px'">grow</button>
<button id="shrink" onclick="tall.style.height = '40px'">shrink</button>
<script>
  const tall = document.createElement("div");
  tall.id = "tall";
  tall.style.height = "300px";
  tall.style.background = "tomato";
  document.body.appendChild(tall);  // outside the output's own element
</script>"""

JAVASCRIPT = """%%javascript
element.id = "js-out";
const result = (name, get) => {
  let text;
  try { text = "read: " + get(); } catch (e) { text = "blocked: " + e.name; }
  const line = document.createElement("pre");
  line.id = name;
  line.textContent = text;
  element.append(line);
};
result("origin", () => window.origin);
result("cookie", () => document.cookie);
result("parent", () => parent.document.title);
result("storage", () => localStorage.length);
window.ranHere = true;
const api = document.createElement("pre");
api.id = "api";
api.textContent = "pending";
element.append(api);
fetch("/rpc", {method: "POST", credentials: "include",
               headers: {"Content-Type": "application/json"},
               body: JSON.stringify({jsonrpc: "2.0", id: 1, method: "auth.whoami"})})
  .then(r => r.text()).then(t => { api.textContent = "answered: " + t; })
  .catch(e => { api.textContent = "failed: " + e.name; });"""

COLOURED_ERROR = r"""import sys
print("\x1b[31mred\x1b[32m green\x1b[34m blue\x1b[0m", file=sys.stderr)
1/0"""

LATER_AND_THROWS = """%%javascript
setTimeout(() => {  // content added after the script returned: the frame follows it
  const later = document.createElement("div");
  later.id = "later";
  later.style.height = "250px";
  element.append(later);
}, 0);
throw new Error("boom");"""

CONTRAST = """root => {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const rgba = (css) => {  // any CSS colour (rgb(), color(srgb ...)) as [r, g, b, a]
    ctx.clearRect(0, 0, 1, 1);
    ctx.fillStyle = "rgba(0, 0, 0, 0)";
    ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, bottom) => top.slice(0, 3).map(
    (c, i) => c * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = (el) => {  // the colour behind el: its backgrounds, composed
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const colour = rgba(getComputedStyle(node).backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] >= 1) break;
    }
    let result = [255, 255, 255, 1];
    for (const layer of layers.reverse()) result = over(layer, result);
    return result;
  };
  const luminance = ([r, g, b]) => 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b);
  const ch = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
  const results = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    if (!text.textContent.trim() || !text.parentElement.checkVisibility()) continue;
    const el = text.parentElement;
    const bg = background(el);
    const fg = over(rgba(getComputedStyle(el).color), bg);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    results.push({ text: text.textContent.trim().slice(0, 40), ratio: (hi + 0.05) / (lo + 0.05),
                   className: el.className });
  }
  return results;
}"""


def surface_luminance(page: Page) -> float:
    """The luminance of the page's --surface (dark theme: low)."""
    value: float = page.evaluate(
        """() => {
          const probe = document.createElement("div");
          probe.style.background = "var(--surface)";
          document.body.append(probe);
          const [r, g, b] = getComputedStyle(probe).backgroundColor.match(/[\\d.]+/g).map(Number);
          probe.remove();
          const ch = (c) => {
            c /= 255;
            return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
          };
          return 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b);
        }"""
    )
    return value


def assert_readable(panel: Locator, what: str) -> None:
    """Every piece of text in `panel` has a contrast of at least 4.5:1 on what is behind it."""
    results: list[dict[str, object]] = panel.evaluate(CONTRAST)
    assert results, f"no text in the {what}"
    poor = [item for item in results if float(str(item["ratio"])) < 4.5]
    assert not poor, f"text in the {what} under 4.5:1: {poor}"


def frame_height(frame: Locator) -> float:
    height: float = frame.evaluate("f => f.getBoundingClientRect().height")
    return height


def wait_for_height(page: Page, frame: Locator, condition: str) -> None:
    """Until the frame element's height satisfies `condition` (JavaScript on `h`)."""
    page.wait_for_function(
        f"f => {{ const h = f.getBoundingClientRect().height; return {condition}; }}",
        arg=frame.element_handle(),
    )


def test_latex_outputs_and_markdown_math_are_typeset_by_katex(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet(LATEX))
    latex = cell(page, 0)
    run(latex)
    outputs = latex.get_by_test_id("output-latex")
    expect(outputs).to_have_count(3)
    math, text, broken = outputs.nth(0), outputs.nth(1), outputs.nth(2)
    expect(math.locator(".katex")).to_have_count(1)
    expect(math).not_to_contain_text("IPython.core.display")
    tex = math.locator("annotation").text_content() or ""  # the TeX, for screen readers
    assert "\\frac{1}{3}" in tex
    expect(text).to_contain_text("The energy")
    expect(text.locator(".katex")).to_have_count(4)  # $E$, \(m\), $$…$$, align
    expect(text.locator(".katex-display")).to_have_count(2)
    markdown = latex.get_by_test_id("output-markdown")
    expect(markdown.locator(".katex")).to_have_count(2)
    expect(markdown.locator(".katex-display")).to_have_count(1)
    expect(broken.locator(".latex-error")).to_have_text("$\\displaystyle \\frac{1$")  # its source
    latex.screenshot(path=screenshots / "latex-outputs.png")
    page.reload()  # saved: the same after a reload
    expect(cell(page, 0).get_by_test_id("output-latex").first.locator(".katex")).to_have_count(1)


def test_json_outputs_are_trees_that_collapse_and_expand_by_mouse_and_keyboard(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet(JSON_TREE))
    sheet = cell(page, 0)
    run(sheet)
    trees = sheet.get_by_role("tree")
    expect(trees).to_have_count(2)
    tree = trees.first
    root = tree.get_by_role("treeitem").first
    expect(root).to_have_attribute("aria-expanded", "true")
    expect(tree).to_contain_text('"answer": 42')
    items = tree.locator("[data-key='\"items\"']")
    expect(items).to_have_attribute("aria-expanded", "false")
    expect(items).to_contain_text("3 items")
    expect(tree.locator("[data-key='0']")).to_have_count(0)  # built when first expanded

    items.locator(".json-line").click()  # the mouse
    expect(items).to_have_attribute("aria-expanded", "true")
    first = items.locator("[data-key='0']")
    expect(first).to_be_visible()
    expect(first).to_have_text("0: 1")
    expect(items).to_be_focused()

    items.press("ArrowLeft")  # the keyboard: collapse
    expect(items).to_have_attribute("aria-expanded", "false")
    expect(first).to_be_hidden()
    items.press("ArrowRight")  # expand
    expect(first).to_be_visible()
    items.press("ArrowRight")  # to the first child
    expect(first).to_be_focused()
    first.press("ArrowDown")
    expect(items.locator("[data-key='1']")).to_be_focused()
    page.keyboard.press("ArrowDown")
    nested = items.locator("[data-key='2']")
    expect(nested).to_be_focused()
    expect(nested).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    expect(nested.locator("[data-key='\"deep\"']")).to_have_text('"deep": true')
    page.keyboard.press("Space")
    expect(nested).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("ArrowLeft")  # a collapsed node: to its parent
    expect(items).to_be_focused()
    page.keyboard.press("Home")
    expect(root).to_be_focused()
    page.keyboard.press("End")
    expect(tree.locator("[data-key='\"none\"']")).to_be_focused()
    assert tree.locator("[tabindex='0']").count() == 1  # one node in the tab order

    expanded = trees.nth(1)  # JSON(..., expanded=True): everything open
    expect(expanded.locator("[aria-expanded='false']")).to_have_count(0)
    expect(expanded.locator("[data-key='0']")).to_have_text("0: 1")
    sheet.screenshot(path=screenshots / "json-tree.png")


def test_a_scripted_html_output_is_sized_to_its_content_and_follows_it(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet(SCRIPTED_HTML))
    html = cell(page, 0)
    run(html)
    frame = html.get_by_test_id("sandbox-frame")
    inside = html.frame_locator("[data-testid='sandbox-frame']")
    expect(inside.locator("#tall")).to_be_attached()
    wait_for_height(page, frame, "h >= 300")

    def content() -> list[float]:
        """The frame's content height and its viewport's height, from inside it."""
        sizes: list[float] = inside.locator("body").evaluate(
            "body => [body.getBoundingClientRect().bottom, innerHeight,"
            " document.documentElement.scrollHeight]"
        )
        return sizes

    bottom, viewport, scroll = content()
    assert bottom <= viewport and scroll <= viewport  # not clipped: nothing to scroll to
    assert viewport - bottom < 8  # and no room to spare
    assert abs(frame_height(frame) - viewport) < 1

    inside.locator("#grow").click()  # its content grows later: the frame follows
    wait_for_height(page, frame, "h >= 600")
    bottom, viewport, scroll = content()
    assert bottom <= viewport and scroll <= viewport
    inside.locator("#shrink").click()  # and shrinks
    wait_for_height(page, frame, "h < 200")
    bottom, viewport, scroll = content()
    assert bottom <= viewport and viewport - bottom < 8


def test_javascript_runs_in_the_sandboxed_frame_only(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    page = ada.open(
        ada.api.worksheet(
            JAVASCRIPT,
            "from IPython.display import Javascript\n"
            "Javascript('element.textContent = \"second \" + 6 * 7')",
            LATER_AND_THROWS,
        )
    )
    js = cell(page, 0)
    run(js)
    inside = js.frame_locator("iframe[sandbox='allow-scripts']")
    expect(inside.locator("#js-out #origin")).to_have_text("read: null")  # an opaque origin
    expect(inside.locator("#cookie")).to_have_text("blocked: SecurityError")
    expect(inside.locator("#parent")).to_have_text("blocked: SecurityError")
    expect(inside.locator("#storage")).to_have_text("blocked: SecurityError")
    expect(inside.locator("#api")).to_have_text("failed: TypeError")  # refused, not answered
    frame = js.get_by_test_id("sandbox-frame")
    assert "allow-same-origin" not in (frame.get_attribute("sandbox") or "")
    assert page.evaluate("window.ranHere") is None  # it ran in the frame, not here
    assert page.evaluate("document.querySelector('#js-out')") is None
    wait_for_height(page, frame, "h >= 60")  # sized to its lines
    expect(js.get_by_test_id("output-text")).to_have_count(0)  # not "<…Javascript object>"

    second = cell(page, 1)
    run(second)
    expect(second.frame_locator("iframe").locator("body")).to_contain_text("second 42")
    third = cell(page, 2)
    run(third)
    expect(third.frame_locator("iframe").locator(".cellbus-script-error")).to_contain_text(
        "Error: boom"
    )  # what it threw, shown in its output
    expect(third.frame_locator("iframe").locator("#later")).to_be_attached()
    wait_for_height(page, third.get_by_test_id("sandbox-frame"), "h >= 250")
    page.reload()  # saved outputs run again, in their frames
    expect(cell(page, 0).frame_locator("iframe").locator("#cookie")).to_have_text(
        "blocked: SecurityError"
    )


def test_the_inspect_and_help_panels_and_frames_are_readable_in_both_themes(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada = person("ada")
    page = ada.open(
        ada.api.worksheet(
            "import math",
            "math.floor",
            "from IPython.display import HTML\nHTML('<p id=\"p\">framed text</p>')",
            COLOURED_ERROR,
            "len?",
        )
    )
    run(cell(page, 0))
    run(cell(page, 2))
    run(cell(page, 3), "error")
    asked = cell(page, 1)
    editor(asked).click()
    editor(asked).press("End")
    editor(asked).press("Shift+Tab")
    inspector = asked.get_by_test_id("cell-inspector")
    expect(inspector).to_contain_text("Return the floor of x")
    run(cell(page, 4))
    help_panel = page.get_by_test_id("help-panel")
    expect(help_panel).to_contain_text("Return the number of items")
    framed = cell(page, 2).frame_locator("iframe")
    expect(framed.locator("#p")).to_have_text("framed text")

    light = surface_luminance(page)
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        surface = surface_luminance(page)
        assert (surface < 0.1) if scheme == "dark" else (surface == light), scheme
        expect(inspector.locator("[class*='ansi-']").first).to_be_visible()  # in colour
        assert_readable(inspector, f"inspect panel ({scheme})")
        expect(help_panel.locator("[class*='ansi-']").first).to_be_visible()
        assert_readable(help_panel, f"help panel ({scheme})")
        assert_readable(cell(page, 3).get_by_test_id("cell-outputs"), f"outputs ({scheme})")
        # the frame follows the theme: its document says so, and its text is the app's colour
        expect(framed.locator("html")).to_have_attribute("data-theme", scheme)
        text_colour: str = page.evaluate("getComputedStyle(document.body).color")
        expect(framed.locator("#p")).to_have_css("color", text_colour)
        page.screenshot(path=screenshots / f"panels-{scheme}.png")

    # the page's own choice (the header's theme menu sets data-theme) wins over the preference
    page.evaluate("document.documentElement.dataset.theme = 'light'")
    expect(framed.locator("html")).to_have_attribute("data-theme", "light")
    light_text: str = page.evaluate("getComputedStyle(document.body).color")
    expect(framed.locator("#p")).to_have_css("color", light_text)
    assert_readable(inspector, "inspect panel (chosen light, preferred dark)")
