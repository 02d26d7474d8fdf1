"""`python -m tools.build_core` (`make core`): the matching core compiled with mypyc, in place.

`engine/book.py` and `engine/matching.py` become extension modules beside their source
(`engine/book.*.so`, `engine/matching.*.so`, and mypyc's runtime for both,
`engine/core__mypyc.*.so`; all git-ignored), which Python imports in preference to the
source, as long as the sources are those compiled (`engine/core-sources.txt` holds their
digest). The C code and objects go to `build/core/`. Needs a C compiler and Python's
headers; without them the build fails and the core runs from its source, the same code
(`engine.core_import` says which one is imported, and why).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("engine/book.py", "engine/matching.py")
BUILD = "build/core"


def main() -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    from engine.core_import import BUILT_FROM, sources_digest

    os.chdir(ROOT)
    BUILT_FROM.unlink(missing_ok=True)
    digest = sources_digest()  # before compiling: an edit meanwhile makes the build stale
    modules = mypycify(list(SOURCES), opt_level="3", group_name="engine.core", target_dir=BUILD)
    setup(
        name="engine-core",
        ext_modules=modules,
        script_args=["build_ext", "--inplace", "--build-temp", f"{BUILD}/temp", "--quiet"],
    )
    BUILT_FROM.write_text(digest + "\n")


if __name__ == "__main__":
    main()
