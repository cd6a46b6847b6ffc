"""The API's methods, one module per namespace, all registered on one `Api`."""

from __future__ import annotations

from ..backend import authenticate
from ..rpc import Api
from . import auth, cell, feed, files, session, worksheet


def build_api() -> Api:
    api = Api(authenticate=authenticate)
    for module in (auth, worksheet, cell, session, feed, files):
        module.register(api)
    return api
