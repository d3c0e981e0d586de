"""The library's layers (docs/architecture.md): every import runs down the layers, and no import cycle exists."""

from __future__ import annotations

from pathlib import Path

from test_dvc_yaml import SRC, _imported_modules, _module_file

PACKAGE = SRC / "clipprobe"
LAYERS = [  # bottom first; a module belongs to the first entry that is it or one of its packages
    (
        "errors",
        "io",
        "paths",
        "readouts",
        "stage",
        "progress",
        "network",
        "stats",
        "experiment",
        "cpu",
        "gpus",
        "plateau",
    ),
    ("runtime", "syncs", "cpu.sqrt", "preprocess", "templates", "data", "contracts", "models.registry"),
    ("models",),
    ("features",),
    ("params", "profiles"),
    ("probes", "decoders"),
    ("summary", "report", "fingerprint", "experiments", "cpu.__main__"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """clipprobe module -> the clipprobe modules it imports (anywhere in its source)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        imported = {_module_name(f) for f in map(_module_file, _imported_modules(path)) if f is not None}
        graph[name] = imported - {name}
    return graph


def layer(module: str) -> int:
    """The layer of a clipprobe module (the package itself, clipprobe/__init__, sits at the bottom)."""
    name = module.removeprefix("clipprobe").removeprefix(".")
    best = (-1, 0)  # (length of the most specific matching entry, its layer)
    for level, entries in enumerate(LAYERS):
        for entry in entries:
            if name == entry or name.startswith(f"{entry}."):
                best = max(best, (len(entry), level))
    assert name == "" or best[0] >= 0, f"{module} is in no layer of LAYERS"
    return best[1]


def test_every_import_runs_down_the_layers():
    upward = sorted(
        f"{module} (layer {layer(module)}) imports {dep} (layer {layer(dep)})"
        for module, deps in _graph().items()
        for dep in deps
        if layer(dep) > layer(module)
    )
    assert not upward


def test_no_import_cycles():
    graph, done, path = _graph(), set(), []

    def visit(module: str) -> None:
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if module in done:
            return
        path.append(module)
        for dep in sorted(graph.get(module, ())):
            # a package's __init__ is imported with any submodule: that edge is not a cycle of the code's making
            if not module.startswith(dep + "."):
                visit(dep)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
