"""The hub's seams in python-socketio, python-engineio, gevent and gevent-websocket still fit.

Every private name of the libraries that the hub overrides, calls or reads
(``services.transport.install.PRIVATE_NAMES``) must exist in the installed
library, and every method of the hub's extension classes that replaces a
library's must take the parameters the library calls it with. An upgrade that
renames or reshapes one fails here, by name, instead of the hub's code
quietly no longer running.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from services.transport.install import EXTENSIONS, PRIVATE_NAMES

SERVICES = Path(__file__).resolve().parent.parent / "services"
# Public API whose names start with an underscore only to keep clear of field names:
# a named tuple's ``_make``, ``_fields``, ``_asdict``, ``_replace`` (the standard
# library's documentation) and a SQLAlchemy ``Row``'s ``_mapping``.
PUBLIC_UNDERSCORED = {"_make", "_fields", "_asdict", "_replace", "_mapping"}


def _label(library: type, name: str = "") -> str:
    return f"{library.__module__}.{library.__qualname__}" + (f".{name}" if name else "")


def _shape(function: object) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def _library_owner(library: type, name: str) -> type | None:
    """The class of the library that defines ``name`` for ``library``, if any."""
    return next((klass for klass in library.__mro__
                 if klass is not object and name in vars(klass)), None)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _overrides(library: type, hub: type) -> list[str]:
    """Methods the hub's class defines that replace one of ``library``'s."""
    return [name for name, value in vars(hub).items()
            if not name.startswith("__") and callable(getattr(hub, name))
            and not isinstance(value, type) and _library_owner(library, name) is not None]


@pytest.mark.parametrize(("library", "name"), PRIVATE_NAMES,
                         ids=[_label(library, name) for library, name in PRIVATE_NAMES])
def test_each_private_library_name_the_hub_relies_on_still_exists(library, name):
    if _library_owner(library, name) is None:
        # Set by the constructor: an attribute of every instance, not of the class.
        assert name in vars(library()), f"{_label(library, name)} is gone"
    for extended, hub in EXTENSIONS:
        if name in vars(hub) and issubclass(extended, library):
            assert _shape(getattr(hub, name)) == _shape(getattr(library, name)), (
                f"{hub.__qualname__}.{name} no longer takes what {_label(library, name)} takes")


@pytest.mark.parametrize(("library", "hub"), EXTENSIONS,
                         ids=[f"{hub.__qualname__}-over-{library.__qualname__}"
                              for library, hub in EXTENSIONS])
def test_each_override_takes_the_parameters_the_library_passes(library, hub):
    listed = {(owner, name) for owner, name in PRIVATE_NAMES}
    for name in _overrides(library, hub):
        owner = _library_owner(library, name)
        assert _shape(getattr(hub, name)) == _shape(getattr(library, name)), (
            f"{hub.__qualname__}.{name} does not take what {_label(owner, name)} takes")
        if _is_private(name):
            assert any(name == listed_name and issubclass(library, listed_owner)
                       for listed_owner, listed_name in listed), (
                f"{hub.__qualname__} overrides {_label(owner, name)}: list it in PRIVATE_NAMES")


def _names_defined_in_services() -> set[str]:
    defined: set[str] = set()
    for path in SERVICES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                defined.add(node.target.id)
    return defined


def test_every_private_library_name_used_in_services_is_listed():
    """A private name read anywhere in services/ that services/ does not define is a
    library's: it belongs in PRIVATE_NAMES, or an upgrade could remove it unnoticed."""
    defined = _names_defined_in_services()
    listed = {name for _, name in PRIVATE_NAMES}
    used: dict[str, str] = {}
    for path in SERVICES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load)
                    and _is_private(node.attr) and node.attr not in defined):
                used.setdefault(node.attr, str(path.relative_to(SERVICES.parent)))
    unlisted = {name: where for name, where in used.items()
                if name not in listed and name not in PUBLIC_UNDERSCORED}
    assert not unlisted, f"private library names used but not in PRIVATE_NAMES: {unlisted}"
