"""The moto version the hooks are written against, and what every hook shares: its patches and the guard."""

from __future__ import annotations

import inspect
from contextlib import AbstractContextManager
from typing import Any

#: The moto version these hooks were written against (pyproject pins it).
PINNED_MOTO_VERSION = "5.2.5"

#: One ``unittest.mock.patch.object(...)`` of a moto internal; :func:`~stratos_cli.local.moto_hooks.installed`
#: starts every hook's patches together and stops them together, in reverse order.
Patch = AbstractContextManager[Any]


class MotoHookError(RuntimeError):
    """moto is not the version (or shape) the hooks were written for."""


def check_moto() -> None:
    """Raise :class:`MotoHookError` unless moto is exactly :data:`PINNED_MOTO_VERSION`."""
    import moto

    if moto.__version__ != PINNED_MOTO_VERSION:
        raise MotoHookError(
            f"stratos_cli.local hooks are written for moto {PINNED_MOTO_VERSION}, found {moto.__version__}: re-check "
            "every hook in stratos_cli/local/moto_hooks/ against the new moto, then update the pin"
        )


def signature_of(obj: Any) -> list[str]:
    """Parameter names of a callable (for the tests that guard the patched internals)."""
    return list(inspect.signature(obj).parameters)
