"""The shape of services/, computed from its source: imports flow one way, modules have one job.

The layers, lowest first (README, "A tour of the code"): a module may import
its own package and any layer below its own, never one above or beside it,
and no chain of imports may come back to where it started. The domain
(notifications, messaging, analytics) never imports the transport. And no
module holds more than one of: SQL, emitting to sockets, a background loop,
protocol framing.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"

# Lowest first. A unit is a package of services/ or one of its top-level modules.
LAYERS: list[set[str]] = [
    {"errors", "passwords", "turns", "deferred_imports"},
    {"observability"},
    {"transport"},
    {"auth", "idempotency"},
    {"accounts"},
    {"realtime"},
    {"analytics_marks"},
    {"notifications"},
    {"messaging", "analytics"},
    {"node"},
]
DOMAIN = {"analytics_marks", "notifications", "messaging", "analytics"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, ast.Module]:
    return {_module_name(path): ast.parse(path.read_text(), str(path))
            for path in sorted(SERVICES.rglob("*.py"))}


def _imports(tree: ast.Module) -> set[str]:
    """Every module of services/ this one imports, at the top or inside a function."""
    known = _modules()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in known:
                    found.add(submodule)
                elif node.module in known:
                    found.add(node.module)
    return found - {"services"}


def _graph() -> dict[str, set[str]]:
    return {name: _imports(tree) - {name} for name, tree in _modules().items()}


def _unit(module: str) -> str:
    return module.split(".")[1]


def _layer(unit: str) -> int:
    for rank, units in enumerate(LAYERS):
        if unit in units:
            return rank
    raise AssertionError(f"services/{unit} is in no layer: place it in LAYERS and the README")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_of_services_has_no_cycle():
    assert _cycles(_graph()) == []


def test_every_package_and_top_level_module_has_a_layer():
    for module in _modules():
        if module != "services":
            _layer(_unit(module))


def test_imports_between_packages_only_go_down():
    upward = [f"{source} imports {target}"
              for source, targets in _graph().items() if source != "services"
              for target in sorted(targets)
              if _unit(source) != _unit(target)
              and _layer(_unit(target)) >= _layer(_unit(source))]
    assert upward == []


def test_domain_code_never_imports_the_transport():
    crossing = [f"{source} imports {target}" for source, targets in _graph().items()
                if source != "services" and _unit(source) in DOMAIN
                for target in sorted(targets) if _unit(target) == "transport"]
    assert crossing == []


# One job per module -------------------------------------------------------------------

# Session calls that manage a transaction rather than run SQL.
SESSION_HOUSEKEEPING = {"commit", "rollback", "close", "remove"}
EMITS = {"emit", "enter_room", "leave_room", "disconnect", "close_room"}
SPAWNS = {"spawn", "spawn_later", "start_background_task"}


def _dotted(node: ast.AST) -> list[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def _runs_sql(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        chain = _dotted(node) if isinstance(node, ast.Attribute) else []
        if chain[:2] == ["db", "engine"] or (
                chain[:2] == ["db", "session"] and len(chain) > 2
                and chain[2] not in SESSION_HOUSEKEEPING):
            return True
    return False


def _emits(tree: ast.Module) -> bool:
    """Hands events to Socket.IO itself, through the ``socketio`` extension."""
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
               and node.func.attr in EMITS and _dotted(node.func)[:1] == ["socketio"]
               for node in ast.walk(tree))


def _runs_a_background_loop(tree: ast.Module) -> bool:
    """Spawns one of its own functions that loops."""
    looping = {node.name for node in ast.walk(tree)
               if isinstance(node, ast.FunctionDef)
               and any(isinstance(inner, ast.While) for inner in ast.walk(node))}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in SPAWNS):
            for argument in node.args:
                chain = _dotted(argument)
                if chain and chain[-1] in looping:
                    return True
    return False


def _frames_a_protocol(tree: ast.Module) -> bool:
    """Packs or unpacks wire formats byte by byte."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "struct" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "struct":
            return True
        if isinstance(node, ast.Attribute) and node.attr in ("from_bytes", "to_bytes"):
            return True
    return False


JOBS = {
    "SQL": _runs_sql,
    "emitting": _emits,
    "a background loop": _runs_a_background_loop,
    "protocol framing": _frames_a_protocol,
}


def test_no_module_holds_more_than_one_job():
    crowded = {}
    for module, tree in _modules().items():
        jobs = [job for job, holds in JOBS.items() if holds(tree)]
        if len(jobs) > 1:
            crowded[module] = jobs
    assert crowded == {}


def test_each_job_is_found_where_it_is_done():
    """The checks above see each job somewhere, so they cannot pass by seeing nothing."""
    held = {job: sorted(module for module, tree in _modules().items() if holds(tree))
            for job, holds in JOBS.items()}
    assert "services.messaging.queue" in held["SQL"]
    assert held["emitting"] == ["services.realtime.emitter"]
    assert {"services.messaging.dispatcher", "services.node.runtime"} <= set(
        held["a background loop"])
    assert "services.transport.frames" in held["protocol framing"]
