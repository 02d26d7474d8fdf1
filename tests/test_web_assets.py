"""The pinned browser assets (web-assets.lock.json) against what the pages load and what
`make web-assets` installed: a page asking for a file the lock does not bring would be
blank offline, and an install that no longer matches the lock serves unpinned files."""

from __future__ import annotations

import json
import re
from pathlib import Path

from graphql_api import tool_pages

ROOT = Path(__file__).resolve().parent.parent
LOCK_TEXT = (ROOT / "web-assets.lock.json").read_text()
LOCK = json.loads(LOCK_TEXT)
SHA512_B64 = re.compile(r"^sha512-[A-Za-z0-9+/]{86}==$")


def pinned_files() -> set[str]:
    return {f"{p['name']}/{f}" for p in LOCK["packages"] for f in p["files"]}


def test_every_package_is_pinned_exactly_with_its_licence() -> None:
    for package in LOCK["packages"]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"]), package
        assert SHA512_B64.match(package["integrity"]), package
        assert "LICENSE" in package["files"], f"{package['name']}: ship its licence"


def test_the_pages_load_only_pinned_files() -> None:
    page = tool_pages.GRAPHIQL_PAGE.read_text()
    loaded = set(re.findall(r"\{\{ vendor \}\}/([\w./-]+)", page))
    assert loaded == set(tool_pages.GRAPHIQL_FILES)
    assert not re.search(r"(src|href)=\"https?:", page)
    assert set(tool_pages.GRAPHIQL_FILES) | set(tool_pages.SWAGGER_FILES) <= pinned_files()


def test_the_installed_assets_are_the_pinned_ones() -> None:
    """`make web-assets` stamps web_vendor/ with the lock it installed from."""
    stamp = tool_pages.VENDOR / "lock.json"
    assert stamp.is_file(), "web_vendor/ is not installed: run `make web-assets`"
    assert stamp.read_text() == LOCK_TEXT, "web_vendor/ is stale: run `make web-assets`"
    for name in pinned_files():
        assert (tool_pages.VENDOR / name).is_file(), name
