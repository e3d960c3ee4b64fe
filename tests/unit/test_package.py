"""The package's own habits, read from its source without importing it: every module
that defines something says what it exports (``__all__``), and every import of a
liveserver name takes one that its module exports (or a submodule)."""

from __future__ import annotations

import ast
from pathlib import Path

import liveserver

ROOT = Path(liveserver.__file__).parent


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(ROOT.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def _all(name: str) -> list[str] | None:
    for node in TREES[name].body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == "__all__" for t in targets) and node.value is not None:
                return list(ast.literal_eval(node.value))
    return None


def _source(importer: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if MODULES[importer].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def test_every_module_that_defines_something_declares_all() -> None:
    defining = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    missing = [name for name, tree in TREES.items()
               if any(isinstance(n, defining) for n in tree.body) and _all(name) is None]
    assert missing == []


def test_every_name_in_all_is_defined_or_imported() -> None:
    unknown = []
    for name, tree in TREES.items():
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                bound.add(node.id)
            elif isinstance(node, ast.ImportFrom | ast.Import):
                bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        unknown += [f"{name}.{n}" for n in _all(name) or () if n not in bound]
    assert unknown == []


def test_imports_take_only_exported_names() -> None:
    outside = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _source(name, node)
            if source not in MODULES:
                continue
            exported = _all(source)
            if exported is None:
                continue
            outside += [f"{name} imports {a.name} from {source}" for a in node.names
                        if a.name not in exported and f"{source}.{a.name}" not in MODULES]
    assert outside == []
