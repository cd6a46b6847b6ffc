"""The browser's copy of the server's facts (error codes, role ranks) is the server's own.

``frontend/web/src/generated.js`` is written from the Python by ``python -m
cellbus_web.generated_js`` and checked in; this fails while it differs, naming the fix.
"""

from __future__ import annotations

from cellbus_protocol.roles import ROLE_RANK
from cellbus_web import generated_js, rpc


def test_the_checked_in_generated_js_is_what_the_python_makes() -> None:
    checked_in = generated_js.GENERATED_JS.read_text()
    assert checked_in == generated_js.render(), (
        "frontend/web/src/generated.js is stale: run `python -m cellbus_web.generated_js`"
    )


def test_it_holds_every_error_code_and_every_role() -> None:
    text = generated_js.render()
    for code in rpc.ErrorCode:
        assert f"  {code.name}: {code.value},\n" in text
    for role, rank in ROLE_RANK.items():
        assert f"  {role}: {rank},\n" in text
