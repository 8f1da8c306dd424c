"""The Engine.IO / Socket.IO engine room; no domain code imports it.

Its hot modules are found in the Cython build first, while that build matches these
sources (``services.transport.compiled``).
"""

from services.transport import compiled

BUILD = compiled.state()
if BUILD == "compiled":
    __path__.insert(0, str(compiled.package_dir()))
