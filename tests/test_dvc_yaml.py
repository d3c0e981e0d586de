"""dvc.yaml cannot go stale: every file a stage's code reaches is one of its deps, and its outs are paths.py's.

A stage script's `clipprobe` imports are walked transitively (ast, every import statement of every module
reached, package __init__ files included); each file reached must lie under one of the stage's deps. A change
to any of them then reruns the stage, instead of `dvc status` calling stale results up to date.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
from dvc.repo import Repo
from pydantic import BaseModel

from clipprobe import paths
from clipprobe.params import Params

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# Files a stage may reach without depending on them, because they cannot change a result: params.py validates
# params.yaml (DVC tracks the values themselves, as params), errors.py is the exception type of one-line errors,
# stage.py the entry-point guard (exit codes, the closing log line). They are not walked further: whatever
# they import is reached, and covered, through the modules that use it.
NOT_DEPS = frozenset({"src/clipprobe/params.py", "src/clipprobe/errors.py", "src/clipprobe/stage.py"})
# What a module reads besides its imports: data files.
ALSO_READS = {"src/clipprobe/models/registry.py": ["src/clipprobe/models/model_configs"]}


def _module_file(module: str) -> Path | None:
    """src/<module>.py or src/<module>/__init__.py, when it is part of this project."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """Every clipprobe module an import statement anywhere in `path` names, with its parent packages."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import x`: x is a submodule or a name defined in pkg
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "clipprobe":
                parts = name.split(".")
                found.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return found


def reached_files(script: Path) -> set[str]:
    """Repository-relative paths of every project file `script` reaches (see the module docstring)."""
    todo, seen = [script], set()
    while todo:
        path = todo.pop()
        rel = path.relative_to(ROOT).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        if rel in NOT_DEPS:
            continue
        for extra in ALSO_READS.get(rel, []):
            todo.append(ROOT / extra) if extra.endswith(".py") else seen.add(extra)
        if path.suffix == ".py":
            todo.extend(f for f in map(_module_file, _imported_modules(path)) if f is not None)
    return seen - set(NOT_DEPS)


def _covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


def _stages() -> list:
    with Repo(str(ROOT)) as repo:
        return list(repo.index.stages)


def _script(stage) -> Path:
    args = shlex.split(stage.cmd)
    assert args[0] == "python" and args[1].startswith("stages/"), (
        f"{stage.addressing}: unexpected cmd {stage.cmd}"
    )
    return ROOT / args[1]


def _deps(stage) -> list[str]:
    return [Path(dep.def_path).as_posix() for dep in stage.deps if not hasattr(dep, "params")]


@pytest.mark.parametrize("stage", _stages(), ids=lambda stage: stage.addressing)
def test_every_file_a_stage_reaches_is_a_dep(stage):
    deps = _deps(stage)
    missing = sorted(f for f in reached_files(_script(stage)) if not _covered(f, deps))
    assert not missing, f"stage {stage.addressing} uses {missing} but does not depend on them"


@pytest.mark.parametrize("stage", _stages(), ids=lambda stage: stage.addressing)
def test_every_code_dep_is_used(stage):
    """No stale code dep either: a change to a file the stage does not use would rerun it for nothing."""
    reached = reached_files(_script(stage))
    code = [dep for dep in _deps(stage) if dep.startswith(("src/", "stages/"))]
    unused = [dep for dep in code if not any(_covered(f, [dep]) for f in reached)]
    assert not unused, f"stage {stage.addressing} depends on {unused} but never uses them"


class _ParamsReads(ast.NodeVisitor):
    """Every `params.<group>.<key>...` chain in a module, cut at the first name that is not a params field."""

    def __init__(self) -> None:
        self.chains: set[str] = set()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        names, value = [], node
        while isinstance(value, ast.Attribute):
            names.append(value.attr)
            value = value.value
        if not (isinstance(value, ast.Name) and value.id == "params"):
            self.generic_visit(node)
            return
        model, kept = Params, []
        for name in reversed(names):
            if model is None or name not in model.model_fields:
                break
            kept.append(name)
            annotation = model.model_fields[name].annotation
            model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if kept:
            self.chains.add(".".join(kept))


def params_read(files: set[str]) -> set[str]:
    """The params.yaml keys the modules in `files` read (a group read whole is its name alone)."""
    reads = _ParamsReads()
    for file in files:
        if file.endswith(".py"):
            reads.visit(ast.parse((ROOT / file).read_text()))
    return reads.chains


def _params_deps(stage) -> list[str]:
    return [key for dep in stage.deps if hasattr(dep, "params") for key in dep.params]


@pytest.mark.parametrize("stage", _stages(), ids=lambda stage: stage.addressing)
def test_params_deps_are_the_params_the_code_reads(stage):
    """dvc.yaml's `params:` of a stage cover every key its code reads, and name nothing it does not read."""
    read, listed = params_read(reached_files(_script(stage))), _params_deps(stage)
    uncovered = sorted(key for key in read if not any(key == p or key.startswith(f"{p}.") for p in listed))
    unused = sorted(
        p for p in listed if not any(p == k or k.startswith(f"{p}.") or p.startswith(f"{k}.") for k in read)
    )
    assert not uncovered, f"stage {stage.addressing} reads params {uncovered} that dvc.yaml does not list"
    assert not unused, f"stage {stage.addressing} lists params {unused} that its code never reads"


@pytest.mark.parametrize("stage", _stages(), ids=lambda stage: stage.addressing)
def test_outs_are_the_paths_the_code_writes(stage):
    name, _, seed = stage.addressing.partition("@")
    outs = sorted(Path(out.def_path).as_posix() for out in stage.outs)
    assert outs == sorted(p.as_posix() for p in paths.outputs(name, int(seed) if seed else None))


def test_the_walk_sees_imports_through_packages():
    reached = reached_files(ROOT / "stages/fewshot.py")
    assert {"src/clipprobe/__init__.py", "src/clipprobe/probes/fewshot/__init__.py"} <= reached
    assert "src/clipprobe/probes/fewshot/closed.py" in reached  # through the registry's plain imports
    assert "src/clipprobe/probes/fewshot/closed.py" not in reached_files(ROOT / "stages/report.py")
    assert "src/clipprobe/params.py" not in reached
