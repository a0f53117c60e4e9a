"""How the book build and gradpath talk to each other.

The book's Sphinx build loads this module as an extension (``_config.yml`` →
``sphinx.extra_extensions``). It does two things:

1. It sets ``GRADPATH_STATIC_BUILD=1`` in the build's environment, which the notebook kernels
   inherit. gradpath then leaves live-only widgets (ipywidgets explorers, tqdm bars) out of the
   static pages, so no page needs require.js or the widget manager from a CDN.
2. It copies plotly.js from the installed ``plotly`` package into ``_static/`` and adds it to the
   pages that hold an interactive figure, so those figures work with no network.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from gradpath.progress import STATIC_BUILD_ENV, is_static_build

__all__ = ["STATIC_BUILD_ENV", "is_static_build", "setup", "plotly_js_path"]

PLOTLY_JS = "plotly.min.js"
PLOTLY_MARKER = "gradpath-interactive"


def plotly_js_path() -> Path:
    """Where the installed plotly package keeps its bundled plotly.js."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.exists():  # pragma: no cover - depends on the plotly wheel
        raise FileNotFoundError(f"plotly.js not found at {path}")
    return path


def _add_plotly_where_needed(app: Any, pagename: str, templatename: str, context: dict,
                             doctree: Any) -> None:
    # Called during html-page-context, add_js_file adds the script to this page only.
    if PLOTLY_MARKER in context.get("body", ""):
        app.add_js_file(PLOTLY_JS)


def _drop_duplicate_scripts(app: Any, pagename: str, templatename: str, context: dict,
                            doctree: Any) -> None:
    # sphinx-thebe registers its inline configuration script twice under Jupyter Book, and the
    # second copy fails with "Identifier 'THEBE_JS_URL' has already been declared".
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        key = (str(getattr(script, "filename", script) or ""),  # None and "" both mean inline
               repr(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _copy_plotly(app: Any, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / PLOTLY_JS
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(plotly_js_path(), target)


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point."""
    os.environ[STATIC_BUILD_ENV] = "1"
    app.connect("html-page-context", _add_plotly_where_needed)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("build-finished", _copy_plotly)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
