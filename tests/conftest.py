"""Shared fixtures: the repository root, chapter list and a deterministic torch."""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("GRADPATH_PROGRESS", "0")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]-*.ipynb"))


torch.set_num_threads(1)   # as gradpath does on the CPU: small nets, and a busy 2-core machine


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium (Debian's), started once per pytest process and shared by every module
    of browser tests: starting Playwright's driver and the browser costs seconds, once per
    module before. Each test or load opens its own browser context (own storage and cache)."""
    import shutil

    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def pytest_xdist_make_scheduler(config, log):
    """``pytest -n 2 --dist loadscope``: every test of one built page goes to the same worker.

    The browser tests (tests/test_site.py) open each page once per configuration and report
    each check as its own test, so all the tests of one page must share a worker (or the page
    is opened in both). The scope of a test is the page in its parameter id
    (``test_x[chapters/01-chain-rule.html]`` -> ``chapters/01-chain-rule.html``); a test without
    a page is its own scope. (pytest-xdist's ``loadgroup`` would do this with marks, but with
    pytest 9 it does not group at all.) Other ``--dist`` modes are left to pytest-xdist.
    """
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class PageScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            page = re.search(r"\[([^\]]*\.html)\]$", nodeid)
            return page.group(1) if page else nodeid

    return PageScheduling(config, log)
