"""Which implementation of the matching core is imported: compiled, or its source.

`engine.book` and `engine.matching` may exist twice: as source, and compiled beside it by
`make core` (`tools.build_core`). Python's import prefers the compiled modules. The package
(`engine/__init__.py`) imports the source instead, both modules together, when:
- `ENGINE_CORE=python` is set: the twin run, the core's tests against the source
  (`make test-core-source`);
- the sources differ from those the build compiled (`BUILT_FROM` records their digest): a
  build from before an edit would run the old code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORE = ("book", "matching")  # `matching` imports `book`
# What the compiled code depends on: the core, and the constants it inlines.
SOURCES = (HERE / "book.py", HERE / "matching.py", HERE.parent / "shared" / "commands.py")
BUILT_FROM = HERE / "core-sources.txt"  # written by tools.build_core, git-ignored


def sources_digest() -> str:
    digest = hashlib.blake2b(digest_size=16)
    for path in SOURCES:
        digest.update(path.read_bytes())
    return digest.hexdigest()


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
    try:
        built_from = BUILT_FROM.read_text().strip()
    except FileNotFoundError:
        built_from = ""
    if built_from != sources_digest():
        return "the core's sources changed since it was compiled (make core)"
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
    """What `engine.matching` runs as: "compiled" or "python"."""
    module = sys.modules.get("engine.matching")
    file = module.__file__ if module is not None else None
    return "compiled" if file is not None and not file.endswith(".py") else "python"


def status() -> dict[str, str]:
    """Which core runs and, for the source, why: the engine logs it when it starts."""
    running = implementation()
    if running == "compiled":
        return {"implementation": running}
    return {"implementation": running, "reason": source_reason() or "not compiled (make core)"}
