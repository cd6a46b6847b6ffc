"""``GET /api/kernelspecs``, ``/api/kernelspecs/{name}`` and ``/kernelspecs/{name}/{file}``.

cellbus offers one kernel: a cellbus session, Python with IPython, sandboxed. It is named
``python3`` so that notebooks saved by Jupyter (whose ``metadata.kernelspec.name`` is almost
always ``python3``) run on it unchanged. A session is not started from a command line, so the
spec's ``argv`` is empty; nothing of Jupyter's reads it through this API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from ..backend import BACKEND
from .auth import json_error, principal_of

KERNEL_NAME = "python3"
DISPLAY_NAME = "Python 3 (cellbus)"
RESOURCES = Path(__file__).resolve().parent
LOGOS = {"logo-32x32.png": "image/png", "logo-64x64.png": "image/png",
         "logo-svg.svg": "image/svg+xml"}  # fmt: skip


def kernelspec() -> dict[str, Any]:
    """The kernelspec model as jupyter_server's ``/api/kernelspecs`` gives it."""
    resources = {name.rsplit(".", 1)[0]: f"/kernelspecs/{KERNEL_NAME}/{name}" for name in LOGOS}
    spec = {
        "argv": [], "display_name": DISPLAY_NAME, "language": "python", "env": {},
        "metadata": {"cellbus": {"shared": True}}, "interrupt_mode": "message",
    }  # fmt: skip
    return {"name": KERNEL_NAME, "spec": spec, "resources": resources}


def known(name: str | None) -> str:
    """The kernelspec name to start (the default if none is asked for), or 404."""
    if name in (None, "", KERNEL_NAME):
        return KERNEL_NAME
    raise json_error(404, f"no kernel spec {name[:64]!r}: cellbus offers {KERNEL_NAME!r}")


async def list_specs(request: web.Request) -> web.Response:
    await principal_of(request, request.app[BACKEND])
    return web.json_response({"default": KERNEL_NAME, "kernelspecs": {KERNEL_NAME: kernelspec()}})


async def get_spec(request: web.Request) -> web.Response:
    await principal_of(request, request.app[BACKEND])
    known(request.match_info["name"])
    return web.json_response(kernelspec())


async def resource(request: web.Request) -> web.StreamResponse:
    """A logo (authenticated, as in jupyter_server: a browser's ``<img>`` sends the cookie
    or a ``?token=``)."""
    await principal_of(request, request.app[BACKEND])
    known(request.match_info["name"])
    name = request.match_info["file"]
    if name not in LOGOS:
        raise json_error(404, f"no kernel spec resource {name[:64]!r}")
    headers = {"Content-Type": LOGOS[name], "Cache-Control": "max-age=86400"}
    return web.FileResponse(RESOURCES / name, headers=headers)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/kernelspecs", list_specs)
    app.router.add_get("/api/kernelspecs/{name}", get_spec)
    app.router.add_get("/kernelspecs/{name}/{file}", resource)
