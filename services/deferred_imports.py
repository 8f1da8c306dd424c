"""Modules a library imports at start-up that the hub never uses, imported on first use.

python-engineio's asyncio client does ``import aiohttp`` whenever aiohttp is
installed (Twilio's SDK requires it), so every hub start imported it through
Flask-SocketIO, and aiohttp builds two SSL contexts, loading the system's
certificates, as it is imported: about a quarter of a second of CPU, a tenth of
a start (BENCHMARKS.md, "What a start costs"). The hub serves with the
synchronous server and sends through Twilio's synchronous client; nothing of
it touches aiohttp.

``defer_import`` puts a stand-in in ``sys.modules`` before that import runs:
``import aiohttp`` binds the stand-in, and the first attribute anything reads
from it imports the real module, which then replaces it. The standard
library's ``importlib.util.LazyLoader`` cannot do this on Python 3.11: the
import system reads the stand-in's ``__spec__``, which loads it at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any


class _Deferred(types.ModuleType):
    """Stands for module ``__name__`` until an attribute of it is read."""

    def __getattr__(self, attribute: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        module = importlib.import_module(name)
        self.__dict__.update(module.__dict__)
        return getattr(module, attribute)


def defer_import(name: str) -> None:
    """Import module ``name`` only when something reads from it; nothing if it is already
    imported or not installed."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _Deferred(name)
    stand_in.__spec__ = spec  # read by ``import name``; a found spec is not "initializing"
    sys.modules[name] = stand_in
