"""HTML from user code runs in a sandboxed frame: it cannot read the app's cookies, reach the
app's page or call the API as the person looking at it."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from .helpers import Person, cell, run

PROBE = r'''from IPython.display import HTML, Markdown, display
display(HTML("""
<pre id="cookie">pending</pre><pre id="parent">pending</pre><pre id="api">pending</pre>
<script>
const show = (id, text) => { document.getElementById(id).textContent = text; };
try { show("cookie", "read: " + document.cookie); }
catch (e) { show("cookie", "blocked: " + e.name); }
try { show("parent", "read: " + parent.document.title); }
catch (e) { show("parent", "blocked: " + e.name); }
fetch("/rpc", {method: "POST", credentials: "include",
               headers: {"Content-Type": "application/json"},
               body: JSON.stringify({jsonrpc: "2.0", id: 1, method: "auth.whoami"})})
  .then(r => r.text()).then(t => show("api", "answered: " + t))
  .catch(e => show("api", "failed: " + e.name));
</script>"""))
display(Markdown('<img src="nothing.png" onerror="document.title = \'pwned\'"> sanitised'))'''


def test_html_output_cannot_read_the_cookie_reach_the_page_or_call_the_api(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet(PROBE))
    probe = cell(page, 0)
    run(probe)
    frame = probe.frame_locator("iframe[sandbox='allow-scripts']")
    expect(frame.locator("#cookie")).to_have_text("blocked: SecurityError")
    expect(frame.locator("#parent")).to_have_text("blocked: SecurityError")
    expect(frame.locator("#api")).to_have_text("failed: TypeError")  # refused, not answered
    iframe = probe.get_by_test_id("sandbox-frame")
    assert "allow-same-origin" not in (iframe.get_attribute("sandbox") or "")
    # the page's own scripts see no cookie either: it is HttpOnly
    assert page.evaluate("document.cookie") == ""
    markdown = probe.get_by_test_id("output-markdown")
    expect(markdown).to_contain_text("sanitised")
    assert markdown.locator("img").get_attribute("onerror") is None
    assert page.title() != "pwned"
