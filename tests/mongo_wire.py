"""A MongoDB wire-protocol server for the tests when `MONGODB_URL` is not set.

No `mongod` can be installed on the machines this project is built on (only PyPI, Debian
and npm are reachable, and none of them ships one), so the MongoDB adapter is tested against
SecantusDB: a single-node server from PyPI that speaks the MongoDB wire protocol (reporting
a one-member replica set, so transactions work) on top of WiredTiger. It is a test tool
only: it is installed into its own venv in the git-ignored `.tools/secantus` (its
dependencies stay out of the project's venv) and the project never ships or imports it.
With `MONGODB_URL` set, the tests use that server (a real mongod) instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from shared.redis_server import free_port
from shared.stack import stop_process

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".tools" / "secantus"
SERVER = VENV / "bin" / "secantusd-py"
SPEC = "SecantusDB==0.7.0b3"  # pinned: a beta


def ensure_server() -> Path:
    """The project-local SecantusDB, installed with pip into its own venv if missing."""
    if SERVER.exists():
        return SERVER
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", SPEC],
        check=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if not SERVER.exists():
        raise RuntimeError(f"`pip install {SPEC}` did not install {SERVER}")
    return SERVER


@contextmanager
def wire_server(data_dir: Path) -> Iterator[str]:
    """`MONGODB_URL` if set; else a SecantusDB server on a free port, for the duration."""
    if os.environ.get("MONGODB_URL"):
        yield os.environ["MONGODB_URL"]
        return
    server = ensure_server()
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "secantus.log", "ab") as log:  # the child keeps its own handle
        process = subprocess.Popen(
            [
                *(str(server), "--host", "127.0.0.1", "--port", str(port)),
                *("--storage-path", str(data_dir)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    url = f"mongodb://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # pymongo types a document as a dict of anything.
                client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=500)
                with client:
                    client.admin.command("ping")
                break
            except PyMongoError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"SecantusDB did not start (see {data_dir / 'secantus.log'})"
                    ) from None
        yield url
    finally:
        stop_process(process, timeout=15)
