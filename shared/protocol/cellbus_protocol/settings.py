"""Settings from ``CELLBUS_*`` environment variables, read once at start.

Each service declares its settings as a frozen dataclass and builds it with
`settings_from_env(KernelSettings, os.environ)` in its ``main()``; nothing reads the
environment at import time, and tests build settings objects directly.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, TypeVar, get_type_hints

PREFIX = "CELLBUS_"


class Dataclass(Protocol):
    """Any dataclass: what `dataclasses.fields` needs of the class it is given."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


T = TypeVar("T", bound=Dataclass)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(name: str, raw: str, kind: Any) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError(f"{name}: expected true or false, got {raw!r}")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise ValueError(f"{name}: expected {noun}, got {raw!r}") from None
    return raw


def settings_from_env(cls: type[T], environ: Mapping[str, str]) -> T:
    """An instance of dataclass `cls` with each field overridden by ``CELLBUS_<FIELD>``."""
    hints = get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        name = PREFIX + field.name.upper()
        if name in environ:
            values[field.name] = _convert(name, environ[name], hints[field.name])
    return cls(**values)


def configure_logging(level: str) -> None:
    """The log format every service writes, at `level` (its CELLBUS_LOG_LEVEL)."""
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def env_names(cls: type) -> list[str]:
    """The ``CELLBUS_*`` variable names that `cls` reads."""
    return [PREFIX + field.name.upper() for field in dataclasses.fields(cls)]
