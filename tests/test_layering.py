"""The library's layers: models/ and data/ sit below everything that uses them, and no import cycle exists."""

from __future__ import annotations

from pathlib import Path

from test_dvc_yaml import SRC, _imported_modules, _module_file

PACKAGE = SRC / "clipprobe"
ABOVE_MODELS_AND_DATA = ("params", "features", "probes", "decoders", "report", "profiles")


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


def test_models_and_data_import_nothing_above_them():
    bad = {
        module: sorted(
            dep for dep in deps if dep.split(".")[1:2] and dep.split(".")[1] in ABOVE_MODELS_AND_DATA
        )
        for module, deps in _graph().items()
        if module.split(".")[1:2] in (["models"], ["data"])
    }
    assert not {module: deps for module, deps in bad.items() if deps}


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
