"""The rooms of the code and what each may import (docs/architecture.md), read from the source: every `import` of a
vidcap module, at the top of a file or inside a function, is an edge. No module may reach itself through them (a
circle), and no room may import a room above it."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "vidcap"

# Rooms, from the bottom: a room may import itself and the rooms its row names.
ALLOWED = {
    "core": set(),                        # the model, its words, images, domain, limits, errors, paths
    "video": {"core"},                    # frame sources, the pipeline, novelty, cuts, subtitles
    "analysis": {"core", "video"},        # the model hosts' interface, the in-process host, the analysis session
    "training": {"core"},                 # vidcap train, presets, the model card
    "formats": {"core", "video"},         # what crosses a door: wire (JSON, protobuf), report (JSON, CSV, PNG)
    "library": {"core", "video", "analysis"},  # the database: videos, stretches, jobs; index and search
    "serving": {"core", "video", "analysis", "formats", "library"},  # TorchServe host, gRPC, HTTP, jobs, the stack
    "client": set(),                      # the gRPC client library: the generated stubs only
    "ui": {"core", "video", "analysis", "formats", "library", "client", "serving"},  # a gRPC client, in the browser
    "cli": {"core", "video", "analysis", "formats", "library", "serving", "training", "ui", "client"},
}
# Imports that go up a room, each for a reason the architecture page gives.
EXCEPTIONS = {
    ("vidcap.serving.stack", "vidcap.ui"),  # `vidcap serve` starts the web UI beside the servers
}


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] in ("video", "analysis", "library", "serving", "training"):
        return parts[1]
    return {"wire": "formats", "report": "formats", "worker_protocol": "formats", "client": "client", "ui": "ui", "ui_timeline": "ui",
            "cli": "cli", "v1": "client"}.get(parts[1], "core") if len(parts) > 1 else "core"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "v1" in path.relative_to(PACKAGE).parts:
            continue  # generated stubs
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The vidcap modules a file imports anywhere in it (`from vidcap.x import y` names vidcap.x.y where that is a
    module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vidcap":
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "vidcap")
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path, modules) if m != name and not m.startswith("vidcap.v1")}
            for name, path in modules.items()}


def test_no_module_reaches_itself_through_its_imports():
    graph = _graph()
    circles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_each_room_imports_only_the_rooms_below_it():
    wrong = sorted((module, imported) for module, imports in _graph().items() for imported in imports
                   if _room(imported) != _room(module) and _room(imported) not in ALLOWED[_room(module)]
                   and (module, imported) not in EXCEPTIONS)
    assert wrong == []


def test_the_check_sees_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The two checks above are not vacuous: a package with a circle and an upward import fails both."""
    package = tmp_path / "vidcap"
    (package / "video").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "video" / "__init__.py").write_text("")
    (package / "model.py").write_text("def f():\n    from vidcap.video.pipeline import run\n")
    (package / "video" / "pipeline.py").write_text("from vidcap.model import f\nfrom vidcap.cli import main\n")
    (package / "cli.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    graph = _graph()
    assert "vidcap.video.pipeline" in graph["vidcap.model"] and "vidcap.model" in graph["vidcap.video.pipeline"]
    try:
        test_no_module_reaches_itself_through_its_imports()
    except AssertionError:
        pass
    else:
        raise AssertionError("a circle went unseen")
    try:
        test_each_room_imports_only_the_rooms_below_it()
    except AssertionError:
        pass
    else:
        raise AssertionError("an upward import went unseen")
