"""Which implementation of the matching core is imported: compiled, or its source.

`engine.book` and `engine.matching` may exist twice: as source, and compiled beside it by
`make core` (`tools.build_core`). Python's import prefers the compiled modules. The package
(`engine/__init__.py`) imports the source instead, both modules together, when:
- `ENGINE_CORE=python` is set: the twin run, the core's tests against the source
  (`make test-core-source`);
- a compiled module is older than its source: built before an edit, it would run old code.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORE = ("book", "matching")  # `matching` imports `book`


def compiled(name: str) -> Path | None:
    for suffix in EXTENSION_SUFFIXES:
        path = HERE / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def source_reason() -> str | None:
    """Why the core must come from its source although compiled modules exist (None: it
    need not, or nothing is compiled)."""
    built = {name: compiled(name) for name in CORE}
    if not any(built.values()):
        return None
    if os.environ.get("ENGINE_CORE") == "python":
        return "ENGINE_CORE=python"
    for name, path in built.items():
        if path is None:
            return f"engine/{name}.py is not compiled"
        if path.stat().st_mtime < (HERE / f"{name}.py").stat().st_mtime:
            return f"engine/{name}.py is newer than its compiled module (run make core)"
    return None


def import_source() -> None:
    package = sys.modules[__package__ or "engine"]
    for name in CORE:
        spec = importlib.util.spec_from_file_location(f"engine.{name}", HERE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(package, name, module)


def implementation() -> str:
    """ "compiled" or "python": what `engine.matching` runs as."""
    module = sys.modules.get("engine.matching")
    file = module.__file__ if module is not None else None
    return "compiled" if file is not None and not file.endswith(".py") else "python"
