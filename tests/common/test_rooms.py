"""The package's structure, drawn from its imports: rooms stand on each other, none reaches back up.

A room is a sub-package of ``roadseg`` (ingest, labeler, trainer, inference, gateway, roadnet, missing,
auth); every top-level module is a node of its own. Every import counts, at module level or inside a
function (a lazy import that runs back up is still a cycle, only hidden).
"""

from __future__ import annotations

import ast
from collections import defaultdict

from utils.paths import REPO

PACKAGE = REPO / "services" / "common" / "roadseg"
#: Which rooms each room must not import: those above it.
ABOVE = {
    "inference": {"gateway", "trainer", "missing", "labeler", "ingest"},
    "roadnet": {"gateway", "trainer", "missing", "labeler", "ingest", "inference"},
    "trainer": {"gateway", "missing"},
    "gateway": {"trainer", "missing", "labeler"},
    "labeler": {"missing", "gateway", "trainer"},
    "ingest": {"labeler", "missing", "gateway", "trainer", "inference"},
    "auth": {"ingest", "labeler", "trainer", "inference", "gateway", "roadnet", "missing"},
}


def node(module: str) -> str:
    """The room of ``roadseg.<room>.…``, else the top-level module itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ".".join(parts[:2])


def imports() -> dict[str, set[str]]:
    """node -> the other nodes it imports."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        here = node("roadseg." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for item in ast.walk(ast.parse(path.read_text())):
            if isinstance(item, ast.ImportFrom) and item.module and item.module.split(".")[0] == "roadseg":
                targets = [item.module] if item.module != "roadseg" else [f"roadseg.{a.name}" for a in item.names]
            elif isinstance(item, ast.Import):
                targets = [a.name for a in item.names if a.name.startswith("roadseg.")]
            else:
                continue
            edges[here] |= {node(t) for t in targets} - {here, "roadseg"}
    return edges


def test_no_room_imports_one_above_it():
    edges = imports()
    wrong = {room: sorted(edges[room] & above) for room, above in ABOVE.items() if edges[room] & above}
    assert not wrong, f"imports running back up: {wrong}"
    assert {"inference"} <= edges["gateway"] and {"inference"} <= edges["trainer"]  # inference below both


def test_the_import_graph_has_no_cycle():
    edges = imports()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(n for n in edges if n in reach(n))
    assert not cycles, f"import cycles through {cycles}"


def test_no_two_modules_of_one_room_share_a_name():
    """``predictions.py`` twice in one room (jobs and routes) made a newcomer open the wrong one."""
    shared = {}
    for room in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        names = [p.name for p in room.rglob("*.py") if p.name != "__init__.py"]
        if repeated := sorted({n for n in names if names.count(n) > 1}):
            shared[room.name] = repeated
    assert not shared, shared
