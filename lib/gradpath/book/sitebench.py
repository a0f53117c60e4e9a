"""How heavy and how fast the built site is: page weight and Lighthouse scores per page.

``python -m gradpath.book.sitebench`` (``make site-bench``) serves ``_build/html`` on the loopback
interface the way a static host does (text compressed with gzip), then for every page of the
book

* loads it in headless Chromium with a cold cache and counts the compressed bytes the server
  sent: once for the first view (what arrives before the reader scrolls) and once after scrolling
  to the bottom, so that anything loaded lazily (plotly.js for the interactive figure) is counted;
* runs Lighthouse's performance audit, with its desktop preset and with its default mobile
  settings (a mid-range phone on a slow 4G link, simulated), ``--runs`` times each (3 by
  default), and reports the median of each number. Lighthouse simulates the phone's slower CPU
  by multiplying the main-thread time it observes, so on a busy machine its scores come out
  lower than on an idle one: compare numbers measured on the same machine under the same load.

Lighthouse comes from the npm registry (``make site-tools`` installs it into ``.sitetools/``,
which git ignores) and runs against Debian's ``chromium``. Without it the weights are still
measured and the Lighthouse columns say ``-``.

``--check`` turns the course's goals into an exit status: median chapter page at most
:data:`MAX_MEDIAN_CHAPTER_BYTES` compressed (after scrolling), and, when Lighthouse ran,
performance at least :data:`MIN_DESKTOP_SCORE` on desktop and :data:`MIN_MOBILE_SCORE` on mobile
for every chapter.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PageResult", "SiteServer", "serve", "book_pages", "page_weight", "lighthouse",
           "lighthouse_command", "median_audit", "measure", "format_table", "check", "main",
           "MAX_MEDIAN_CHAPTER_BYTES", "MIN_DESKTOP_SCORE", "MIN_MOBILE_SCORE"]

MAX_MEDIAN_CHAPTER_BYTES = 1_500_000
MIN_DESKTOP_SCORE = 90
MIN_MOBILE_SCORE = 75
LIGHTHOUSE_ENV = "GRADPATH_LIGHTHOUSE"
CHROMIUM_ENV = "CHROME_PATH"
DEFAULT_LIGHTHOUSE = Path(".sitetools") / "node_modules" / ".bin" / "lighthouse"
COMPRESSIBLE = (".html", ".js", ".css", ".svg", ".json", ".txt", ".map", ".xml", ".ico",
                ".ttf", ".otf", ".eot", ".ipynb")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files like a static host: gzip for text when the client accepts it, bytes counted."""

    server: SiteServer

    def log_message(self, *args: object) -> None:  # keep test and bench output clean
        pass

    def send_head(self) -> Any:
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        wants_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        if not (wants_gzip and path.is_file() and path.suffix.lower() in COMPRESSIBLE):
            return super().send_head()
        body = self.server.gzipped(path)
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return _CountedBody(body)

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.data if isinstance(source, _CountedBody) else source.read()
        try:
            outputfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the browser moved on: not an error
            return
        self.server.count(len(data))


class _CountedBody:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def close(self) -> None:
        pass


class SiteServer(http.server.ThreadingHTTPServer):
    """A loopback static server for a built site that counts the body bytes it sends."""

    daemon_threads = True

    def __init__(self, site: Path) -> None:
        self.site = Path(site)
        handler = functools.partial(_Handler, directory=str(self.site))
        super().__init__(("127.0.0.1", 0), handler)
        self._lock = threading.Lock()
        self._sent = 0
        self._cache: dict[Path, bytes] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def gzipped(self, path: Path) -> bytes:
        with self._lock:
            if path not in self._cache:
                self._cache[path] = gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)
            return self._cache[path]

    def count(self, n: int) -> None:
        with self._lock:
            self._sent += n

    def sent(self) -> int:
        """Body bytes sent so far (compressed where compressed)."""
        with self._lock:
            return self._sent


@contextlib.contextmanager
def serve(site: str | Path) -> Iterator[SiteServer]:
    """Serve ``site`` on 127.0.0.1 (a free port) for the duration of the ``with`` block.

    Raises:
        FileNotFoundError: if ``site`` has no ``intro.html`` (the book is not built).
    """
    site = Path(site)
    if not (site / "intro.html").is_file():
        raise FileNotFoundError(f"no built site at {site} (intro.html missing): run `make book`")
    httpd = SiteServer(site)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def book_pages(site: str | Path) -> list[str]:
    """The book's pages, relative to the site root: the intro, then every chapter in order."""
    site = Path(site)
    chapters = sorted(p.relative_to(site).as_posix()
                      for p in (site / "chapters").glob("[0-9][0-9]-*.html"))
    return ["intro.html", *chapters]


@dataclass
class PageResult:
    """One page's measurements. Bytes are compressed body bytes; scores are 0-100."""

    page: str
    first_view_bytes: int
    scrolled_bytes: int
    desktop: dict[str, float] = field(default_factory=dict)
    mobile: dict[str, float] = field(default_factory=dict)


def page_weight(browser: Any, server: SiteServer, page: str, width: int = 1280,
                height: int = 800) -> tuple[int, int]:
    """Compressed bytes for ``page`` with a cold cache: ``(first view, after scrolling through)``.

    ``browser`` is a Playwright ``Browser``. Every request to another host is aborted (the book
    makes none; a stray one would not be counted, and the browser tests catch it).
    """
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        tab = context.new_page()
        tab.route("**/*", lambda r: r.continue_() if r.request.url.startswith(
            (server.url, "data:", "blob:")) else r.abort())
        start = server.sent()
        tab.goto(f"{server.url}/{page}", wait_until="load")
        tab.wait_for_load_state("networkidle")
        first = server.sent() - start
        tab.evaluate("""async () => {
            for (let y = 0; y < document.body.scrollHeight; y += window.innerHeight / 2) {
                window.scrollTo(0, y);
                await new Promise(r => setTimeout(r, 60));
            }
            window.scrollTo(0, document.body.scrollHeight);
        }""")
        tab.wait_for_timeout(500)
        tab.wait_for_load_state("networkidle")
        return first, server.sent() - start
    finally:
        context.close()


def lighthouse_command() -> list[str] | None:
    """How to run Lighthouse here (``$GRADPATH_LIGHTHOUSE`` or ``.sitetools/``), or ``None``."""
    configured = os.environ.get(LIGHTHOUSE_ENV)
    candidates = [Path(configured)] if configured else [DEFAULT_LIGHTHOUSE.resolve()]
    for candidate in candidates:
        if candidate.is_file():
            return [str(candidate)]
    found = shutil.which("lighthouse")
    return [found] if found else None


def chromium_path() -> str:
    """Debian's chromium (``$CHROME_PATH`` overrides)."""
    return (os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")
            or shutil.which("chromium-browser") or "/usr/bin/chromium")


def lighthouse(url: str, preset: str, command: Sequence[str] | None = None,
               timeout: float = 240.0) -> dict[str, float]:
    """Lighthouse's performance audit of ``url``: score (0-100) and timings (ms) and weight (B).

    Args:
        preset: ``"desktop"`` (Lighthouse's desktop preset) or ``"mobile"`` (its default: a
            mid-range phone with simulated slow 4G and 4x CPU slowdown).

    Raises:
        ValueError: for another ``preset``.
        RuntimeError: if Lighthouse is not installed or fails; the message has its output.
    """
    if preset not in ("desktop", "mobile"):
        raise ValueError(f"preset must be 'desktop' or 'mobile', got {preset!r}")
    command = list(command) if command else lighthouse_command()
    if not command:
        raise RuntimeError("lighthouse is not installed: run `make site-tools` "
                           f"(or set {LIGHTHOUSE_ENV})")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        args = [*command, url, "--only-categories=performance", "--output=json",
                f"--output-path={out}", "--quiet", "--max-wait-for-load=60000",
                f"--chrome-path={chromium_path()}",
                "--chrome-flags=--headless=new --no-sandbox --disable-gpu "
                "--disable-dev-shm-usage --disable-background-networking "
                "--disable-component-update --no-first-run"]
        if preset == "desktop":
            args.append("--preset=desktop")
        env = {**os.environ, "CHROME_PATH": chromium_path()}
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"lighthouse failed on {url} ({preset}): "
                               f"{(done.stderr or done.stdout)[-2000:]}")
        report = json.loads(out.read_text(encoding="utf-8"))
    audits = report["audits"]
    score = report["categories"]["performance"]["score"]
    blocking = audits.get("render-blocking-resources", {}).get("details", {}).get("items", [])
    return {
        "score": round(100 * score) if score is not None else float("nan"),
        "fcp_ms": audits["first-contentful-paint"]["numericValue"],
        "lcp_ms": audits["largest-contentful-paint"]["numericValue"],
        "si_ms": audits["speed-index"]["numericValue"],
        "tbt_ms": audits["total-blocking-time"]["numericValue"],
        "cls": audits["cumulative-layout-shift"]["numericValue"],
        "bytes": audits["total-byte-weight"]["numericValue"],
        "render_blocking": float(len(blocking)),
    }


def median_audit(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """The median of each measurement over several Lighthouse runs of one page and preset
    (Lighthouse's own advice: one run varies by several points, more on a busy machine)."""
    if not runs:
        return {}
    return {key: float(statistics.median(r[key] for r in runs)) for key in runs[0]}


def measure(site: str | Path, pages: Sequence[str] | None = None, run_lighthouse: bool = True,
            progress: bool = True, runs: int = 3) -> list[PageResult]:
    """Weigh (and, when asked and installed, audit with Lighthouse) every page of ``site``.

    Each Lighthouse number is the median of ``runs`` runs per page and preset.

    Raises:
        ValueError: if ``runs`` is less than 1.
    """
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    from playwright.sync_api import sync_playwright

    pages = list(pages) if pages else book_pages(site)
    command = lighthouse_command() if run_lighthouse else None
    if run_lighthouse and command is None and progress:
        print("lighthouse not installed (make site-tools): measuring weights only",
              file=sys.stderr)
    results = []
    with serve(site) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            for page in pages:
                first, scrolled = page_weight(browser, server, page)
                result = PageResult(page, first, scrolled)
                if command:
                    url = f"{server.url}/{page}"
                    result.desktop = median_audit([lighthouse(url, "desktop", command)
                                                   for _ in range(runs)])
                    result.mobile = median_audit([lighthouse(url, "mobile", command)
                                                  for _ in range(runs)])
                if progress:
                    print(f"measured {page}", file=sys.stderr)
                results.append(result)
        finally:
            browser.close()
    return results


def _kb(n: float) -> str:
    return f"{n / 1000:,.0f}"


def _score(d: dict[str, float], key: str = "score") -> str:
    return "-" if not d else f"{d[key]:.0f}"


def format_table(results: Sequence[PageResult]) -> str:
    """A Markdown table: one row per page, then the chapters' median."""
    head = ("| page | first view kB (gz) | after scrolling kB (gz) | LH desktop | LH mobile "
            "| mobile FCP s | mobile TBT ms | render-blocking |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = [head]
    for r in results:
        fcp = f"{r.mobile['fcp_ms'] / 1000:.1f}" if r.mobile else "-"
        rows.append(f"| {r.page} | {_kb(r.first_view_bytes)} | {_kb(r.scrolled_bytes)} "
                    f"| {_score(r.desktop)} | {_score(r.mobile)} | {fcp} "
                    f"| {_score(r.mobile, 'tbt_ms')} | {_score(r.mobile, 'render_blocking')} |")
    chapters = [r for r in results if r.page.startswith("chapters/")]
    if chapters:
        def med(values: list[float]) -> float:
            return statistics.median(values)
        rows.append(f"| median chapter | {_kb(med([r.first_view_bytes for r in chapters]))} "
                    f"| {_kb(med([r.scrolled_bytes for r in chapters]))} "
                    + ("| " + f"{med([r.desktop['score'] for r in chapters]):.0f} | "
                       + f"{med([r.mobile['score'] for r in chapters]):.0f} | | | |"
                       if all(r.desktop and r.mobile for r in chapters) else "| - | - | | | |"))
    return "\n".join(rows)


def check(results: Sequence[PageResult]) -> list[str]:
    """The goals the results miss (an empty list when all are met)."""
    chapters = [r for r in results if r.page.startswith("chapters/")]
    failures = []
    if chapters:
        median = statistics.median(r.scrolled_bytes for r in chapters)
        if median > MAX_MEDIAN_CHAPTER_BYTES:
            failures.append(f"median chapter weighs {median:,.0f} B compressed "
                            f"(goal <= {MAX_MEDIAN_CHAPTER_BYTES:,})")
    for r in chapters:
        if r.desktop and r.desktop["score"] < MIN_DESKTOP_SCORE:
            failures.append(f"{r.page}: Lighthouse desktop {r.desktop['score']:.0f} "
                            f"(goal >= {MIN_DESKTOP_SCORE})")
        if r.mobile and r.mobile["score"] < MIN_MOBILE_SCORE:
            failures.append(f"{r.page}: Lighthouse mobile {r.mobile['score']:.0f} "
                            f"(goal >= {MIN_MOBILE_SCORE})")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the table; ``--check`` exits 1 when a goal is missed."""
    parser = argparse.ArgumentParser(prog="python -m gradpath.book.sitebench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", default="_build/html",
                        help="the built site (default: %(default)s)")
    parser.add_argument("--pages", nargs="*", help="pages relative to the site (default: all)")
    parser.add_argument("--no-lighthouse", action="store_true", help="measure weights only")
    parser.add_argument("--runs", type=int, default=3,
                        help="Lighthouse runs per page and preset; the table shows medians "
                             "(default: %(default)s)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--check", action="store_true", help="exit 1 unless the goals are met")
    args = parser.parse_args(argv)
    results = measure(args.site, args.pages, run_lighthouse=not args.no_lighthouse,
                      runs=args.runs)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1),
                                   encoding="utf-8")
    if args.check:
        failures = check(results)
        for failure in failures:
            print(f"GOAL MISSED: {failure}", file=sys.stderr)
        return 1 if failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
