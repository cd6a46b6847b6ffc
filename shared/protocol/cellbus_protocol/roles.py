"""Roles on a worksheet, and their ranks: the one definition of both.

Roles rank viewer < editor < owner, and each may do all that the ones below it may: a viewer
reads a worksheet and watches its session; an editor also edits and runs cells; an owner also
renames, shares and deletes it. The accounts service checks permissions with `ROLE_RANK`, the web
service its cached roles, and the browser reads it from ``frontend/web/src/generated.js``,
written from this module by ``python -m cellbus_web.client_facts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, get_args

Role = Literal["viewer", "editor", "owner"]
"""The roles, lowest first."""

Grant = Literal[Role, "none"]
"""What an owner may give someone with ``worksheet.share``: a role, or ``none`` to take it away."""

ROLE_RANK: Final[Mapping[str, int]] = MappingProxyType(
    {role: rank for rank, role in enumerate(get_args(Role), start=1)}
)
"""viewer 1, editor 2, owner 3: a higher rank may do all that a lower one may."""


def role_allows(role: str, needs: Role) -> bool:
    """Whether `role` may do what `needs` may (a name that is no role allows nothing)."""
    return ROLE_RANK.get(role, 0) >= ROLE_RANK[needs]


def with_article(role: str) -> str:
    """ "an editor", "a viewer": the role with its article, for messages."""
    return f"an {role}" if role[:1] in ("a", "e", "i", "o", "u") else f"a {role}"


def too_low(role: str, needs: Role) -> str:
    """What to tell someone whose `role` is below `needs`."""
    return f"this needs the {needs} role; you are {with_article(role)}"
