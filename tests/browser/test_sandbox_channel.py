"""The channel between the app and its sandboxed output frames, as a hostile output uses it.

An output's script can post anything to the app (its `parent`) and to the other frames of the
page (`parent.frames`). The app must take nothing from it but a height for that one frame,
within bounds (docs/security.md, "Output frames"); another output's frame must take nothing
from it at all; and a script output must reach neither the app's cookies, DOM nor API."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, Request, expect

from .helpers import Person, cell, run

MIN_HEIGHT, MAX_HEIGHT = 16, 5000  # outputs/sandbox.js

HOSTILE = """from IPython.display import HTML
HTML('''<p id="hostile">hostile output</p>
<button id="huge">huge</button><button id="tiny">tiny</button><button id="junk">junk</button>
<button id="others">others</button>
<script>
(() => {  // a function: the script runs again when the frame asks for its content again
const post = (message) => parent.postMessage(message, "*");
document.getElementById("huge").onclick = () => post({cellbus: "height", height: 1e9});
document.getElementById("tiny").onclick = () => post({cellbus: "height", height: -50});
document.getElementById("junk").onclick = () => {
  for (const height of ["900px", NaN, Infinity, -Infinity, null, [900], {valueOf: 0}]) {
    try { post({cellbus: "height", height}); } catch (e) { /* not cloneable */ }
  }
  post({cellbus: "render", html: "<p id=pwned>pwned</p>"});
  post({cellbus: "theme", theme: "dark", colors: {"--text": "red"}});
  post({cellbus: "comm_send", ref: "r1", comm_id: "c1", kind: "msg", data: {method: "update"}});
  post({cellbus: "comm_send", ref: "r2", comm_id: "c1", kind: "close", data: {}});
  post({cellbus: "widget", model_id: "m"});
  post({cellbus: "ready"});
  post("a string");
  post({cellbus: "height", height: 321});  // the last: once the app has it, it had all the rest
};
document.getElementById("others").onclick = () => {
  for (let i = 0; i < parent.frames.length; i++) {
    try {
      parent.frames[i].postMessage({cellbus: "render", html: "<p id=pwned>pwned</p>"}, "*");
      parent.frames[i].postMessage(
        {cellbus: "theme", theme: "dark", colors: {"--text": "red"}}, "*");
    } catch (e) { /* nothing */ }
  }
  post({cellbus: "height", height: 222});
};
})();
</script>''')"""

VICTIM = """from IPython.display import HTML
HTML('<p id="victim">the victim output</p>')"""

SCRIPT = """%%javascript
const tries = {
  cookie: () => document.cookie,
  parentDom: () => parent.document.body.innerHTML,
  topDom: () => top.document.title,
  parentLocation: () => parent.location.href,
  storage: () => localStorage.getItem("cellbus.theme"),
  opener: () => String(window.open("/")),
};
for (const [name, attempt] of Object.entries(tries)) {
  const line = document.createElement("pre");
  line.dataset.name = name;
  try { line.textContent = "read: " + attempt(); }
  catch (e) { line.textContent = "blocked: " + e.name; }
  element.append(line);
}
try { parent.document.body.dataset.pwned = "yes"; } catch (e) { /* blocked */ }
try { top.location = "https://example.invalid/"; } catch (e) { /* blocked */ }
const api = document.createElement("pre");
api.dataset.name = "api";
api.textContent = "pending";
element.append(api);
fetch("/rpc", {method: "POST", credentials: "include",
               headers: {"Content-Type": "application/json"},
               body: JSON.stringify({jsonrpc: "2.0", id: 1, method: "worksheet.list"})})
  .then(r => r.text()).then(t => { api.textContent = "answered: " + t; })
  .catch(e => { api.textContent = "failed: " + e.name; });"""

LOOP = """from IPython.display import HTML
HTML('''<p>renders: <span id="renders">0</span></p><button id="barrier">barrier</button>
<script>
window.renderCount = (window.renderCount || 0) + 1;
document.getElementById("renders").textContent = window.renderCount;
document.getElementById("barrier").onclick = () =>
  parent.postMessage({cellbus: "height", height: 777}, "*");
parent.postMessage({cellbus: "ready"}, "*");  // send me again, and again...
</script>''')"""

RECORD_HEIGHTS = """frame => {
  window.heightsSeen = [];
  new MutationObserver(() => window.heightsSeen.push(frame.style.height))
    .observe(frame, {attributes: true, attributeFilter: ["style"]});
}"""


def rpc_methods(page: Page) -> list[str]:
    """The JSON-RPC methods the page calls from now on (its requests to /rpc)."""
    methods: list[str] = []

    def seen(request: Request) -> None:
        if request.url.endswith("/rpc") and request.post_data:
            methods.append(request.post_data)

    page.on("request", seen)
    return methods


def test_a_frame_can_only_resize_itself_within_bounds(person: Callable[..., Person]) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet(HOSTILE, VICTIM))
    hostile, victim = cell(page, 0), cell(page, 1)
    run(hostile)
    run(victim)
    inside = hostile.frame_locator("iframe")
    victim_inside = victim.frame_locator("iframe")
    expect(inside.locator("#hostile")).to_be_visible()
    expect(victim_inside.locator("#victim")).to_be_visible()
    frame = hostile.get_by_test_id("sandbox-frame")
    victim_frame = victim.get_by_test_id("sandbox-frame")
    victim_height = victim_frame.evaluate("f => f.style.height")
    frame.evaluate(RECORD_HEIGHTS)
    calls = rpc_methods(page)

    inside.locator("#huge").dispatch_event("click")
    expect(frame).to_have_css("height", f"{MAX_HEIGHT}px")  # bounded
    inside.locator("#tiny").dispatch_event("click")
    expect(frame).to_have_css("height", f"{MIN_HEIGHT}px")
    inside.locator("#junk").dispatch_event("click")
    expect(frame).to_have_css("height", "321px")
    heights: list[str] = page.evaluate("window.heightsSeen")
    assert heights[-1] == "321px", heights
    assert f"{MAX_HEIGHT}px" in heights and f"{MIN_HEIGHT}px" in heights, heights
    # the junk changed nothing: every height the frame had was a sane one it was given
    assert all(MIN_HEIGHT <= float(h.removesuffix("px")) <= MAX_HEIGHT for h in heights), heights
    assert "900px" not in heights, heights

    # nothing else happened: no call to the API (no comm sent for it), its content and
    # theme unchanged, the other output untouched
    assert not [call for call in calls if "session.comm" in call], calls
    expect(inside.locator("#pwned")).to_have_count(0)
    expect(inside.locator("#hostile")).not_to_have_css("color", "rgb(255, 0, 0)")
    assert victim_frame.evaluate("f => f.style.height") == victim_height

    # it posts to the other frames of the page: they take nothing from it
    inside.locator("#others").dispatch_event("click")
    expect(frame).to_have_css("height", "222px")
    expect(victim_inside.locator("#pwned")).to_have_count(0)
    expect(victim_inside.locator("#victim")).to_be_visible()
    expect(victim_inside.locator("#victim")).not_to_have_css("color", "rgb(255, 0, 0)")
    assert page.evaluate("document.body.dataset.pwned") is None


def test_a_script_output_reaches_neither_the_apps_cookies_dom_nor_api(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet(SCRIPT))
    script = cell(page, 0)
    run(script)
    inside = script.frame_locator("iframe[sandbox='allow-scripts']")
    for name in ("cookie", "parentDom", "topDom", "parentLocation", "storage"):
        expect(inside.locator(f"[data-name={name}]")).to_have_text("blocked: SecurityError")
    expect(inside.locator("[data-name=opener]")).to_have_text("read: null")  # no pop-up
    expect(inside.locator("[data-name=api]")).to_have_text("failed: TypeError")
    assert page.evaluate("document.body.dataset.pwned") is None
    assert page.url.startswith(ada.url)  # the page was not navigated away
    expect(page.get_by_test_id("worksheet-page")).to_be_visible()
    assert len(page.context.pages) == 1


def test_a_frame_cannot_keep_the_app_sending_it_its_content(
    person: Callable[..., Person],
) -> None:
    """An output that says "ready" each time it is shown would have the app send it again in
    a loop: the app answers one "ready" per load of the frame, and one more."""
    ada = person("ada")
    page = ada.open(ada.api.worksheet(LOOP))
    looping = cell(page, 0)
    run(looping)
    inside = looping.frame_locator("iframe")
    expect(inside.locator("#renders")).not_to_have_text("0")
    inside.locator("#barrier").dispatch_event("click")  # after this, whatever the app does
    expect(looping.get_by_test_id("sandbox-frame")).to_have_css("height", "777px")
    renders = int(inside.locator("#renders").text_content() or "0")
    assert 1 <= renders <= 2, renders  # not a loop: it would be in the thousands by now
