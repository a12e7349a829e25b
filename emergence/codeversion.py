"""The code version of each pipeline stage: a hash of the normalised source of the modules the stage runs.

A stage is named by its entry modules; its modules are those entries plus every `emergence.*` module they import,
transitively (imports inside functions included, and each package's `__init__`), plus the data files it reads.
A module's source is normalised to its syntax tree without docstrings (comments and layout never reach the tree),
so editing a comment or a docstring changes no version, while a change to what the code does changes the
version of exactly the stages that run it. The content keys of runs, tasks and cells carry these versions.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path

import yaml

# The code behind each kind of result, as entry modules; the data files (package data) a stage reads besides.
STAGE_ENTRIES = {
    "training": ("emergence.ladder.train",),  # ladder runs
    "models": ("emergence.models.families",),  # hub and local runs
    "tasks": ("emergence.tasks.catalog",),
    "evaluation": ("emergence.evaluate",),
    "aggregation": ("emergence.aggregate", "emergence.provenance"),
    "analysis": ("emergence.analysis", "emergence.plots"),
}
STAGE_DATA = {
    "training": ("emergence/data/bigbench/**/task.json",),  # training rejects every problem they pose
    "models": ("emergence/models/suites.yaml",),
    "tasks": ("emergence/tasks/bigbench_index.json",),
    "evaluation": ("emergence/tasks/templates/*.yaml",),
}
PACKAGE = "emergence"


def _module_file(basedir: Path, module: str) -> Path | None:
    """`emergence.tasks.views` -> basedir/emergence/tasks/views.py (or a package's __init__.py); None if absent."""
    path = basedir.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement in `tree` may load, resolved against `module` for relative imports."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                base = node.module
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


@functools.cache
def _parsed(path: Path, module: str, stamp: tuple[int, int]) -> tuple[str, frozenset[str]]:
    """(sha256 of the normalised syntax tree, imported module names) of one module file; `stamp` (mtime, size)
    makes an edited file parse again."""
    tree = ast.parse(path.read_text(), filename=str(path))
    imports = frozenset(_imported_modules(tree, module, path.name == "__init__.py"))
    return hashlib.sha256(ast.dump(_without_docstrings(tree)).encode()).hexdigest(), imports


def stage_modules(basedir: str | Path, entries: tuple[str, ...]) -> dict[str, str]:
    """{module name: digest of its normalised source} for `entries` and every `emergence.*` module they import,
    transitively."""
    basedir = Path(basedir)
    digests, pending = {}, list(entries)
    while pending:
        module = pending.pop()
        if module in digests or not (module == PACKAGE or module.startswith(PACKAGE + ".")):
            continue
        path = _module_file(basedir, module)
        if path is None:  # `from pkg import name` where name is not a submodule
            continue
        stat = path.stat()
        digests[module], imports = _parsed(path, module, (stat.st_mtime_ns, stat.st_size))
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        pending += parents + sorted(imports)
    return digests


def _data_digest(path: Path) -> str:
    """YAML and JSON by their content (comments and layout do not count), other files by their bytes."""
    if path.suffix == ".json":
        return json.dumps(json.loads(path.read_text()), sort_keys=True)
    if path.suffix in (".yaml", ".yml"):
        return json.dumps(yaml.safe_load(path.read_text()), sort_keys=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_version(basedir: str | Path, stage: str) -> str:
    """The stage's code version: a sha256 over its modules' normalised syntax trees and its data files."""
    basedir = Path(basedir)
    digest = hashlib.sha256()
    for module, module_digest in sorted(stage_modules(basedir, STAGE_ENTRIES[stage]).items()):
        digest.update(f"{module} {module_digest}\n".encode())
    for pattern in STAGE_DATA.get(stage, ()):
        paths = sorted(basedir.glob(pattern))
        if not paths:
            raise FileNotFoundError(f"code version of stage {stage!r}: no file matches {pattern} under {basedir}")
        for path in paths:
            digest.update(f"{path.relative_to(basedir)}\n{_data_digest(path)}\n".encode())
    return digest.hexdigest()


def stage_versions(basedir: str | Path) -> dict[str, str]:
    """{stage: code version} for every stage."""
    return {stage: stage_version(basedir, stage) for stage in STAGE_ENTRIES}
