"""The benchmark command and the book-build hooks in gradpath.book.site."""

from __future__ import annotations

import os

import nbformat
import pytest
from gradpath.book import bench, site
from sphinx.builders.html._assets import _JavaScript


def _notebook(path, source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


def test_bench_measures_a_notebook(tmp_path, capsys):
    path = _notebook(tmp_path / "tiny.ipynb", "x = bytearray(50_000_000)")
    row = bench.run_one(path)
    assert row["notebook"] == "tiny.ipynb" and row["seconds"] > 0
    assert row["peak_mib"] > 40  # the kernel held a 50 MB buffer
    assert bench.main(["--no-overhead", str(path)]) == 0
    table = capsys.readouterr().out
    assert "| tiny.ipynb" in table and "peak MiB" in table


def test_bench_reports_a_failing_notebook(tmp_path, capsys):
    path = _notebook(tmp_path / "broken.ipynb", "raise RuntimeError('boom')")
    assert bench.main(["--no-overhead", str(path)]) == 1
    assert "FAILED" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main([str(tmp_path / "missing.ipynb")])


def test_recording_overhead_is_measured_on_the_same_model_and_batches(capsys):
    row = bench.recording_overhead(16, depth=3, steps=5, repeats=1)
    assert row["width"] == 16 and row["bare_s"] > 0 and row["train_s"] > 0
    assert row["ratio"] > 0
    assert set(bench.OVERHEAD_TARGETS) == {256, 64}


class _App:
    def __init__(self):
        self.js = []

    def add_js_file(self, name):
        self.js.append(name)


def test_every_page_gets_a_meta_description_once():
    context = {"title": "Chapter 1", "metatags": ""}
    site._page_context(None, "a", "page.html", context, None)
    assert context["metatags"].count('name="description"') == 1
    given = {"title": "x", "metatags": '<meta name="description" content="mine" />'}
    site._page_context(None, "b", "page.html", given, None)
    assert given["metatags"].count('name="description"') == 1 and "mine" in given["metatags"]


def test_inline_scripts_registered_twice_are_kept_once():
    scripts = [_JavaScript("_static/a.js"), _JavaScript(None, body="const X = 1;"),
               _JavaScript("", body="const X = 1;"), _JavaScript("", body="const Y = 2;")]
    context = {"script_files": scripts}
    site._drop_duplicate_scripts(None, "p", "page.html", context, None)
    bodies = [s.attributes.get("body") for s in context["script_files"]]
    assert bodies == [None, "const X = 1;", "const Y = 2;"]


def test_setup_marks_the_static_build(monkeypatch):
    monkeypatch.setenv(site.STATIC_BUILD_ENV, "0")  # restored after the test

    class App:
        events = []

        def connect(self, event, handler, priority=500):
            self.events.append(event)

    meta = site.setup(App())
    assert os.environ[site.STATIC_BUILD_ENV] == "1" and meta["parallel_read_safe"]
    assert App.events.count("html-page-context") == 2 and "build-finished" in App.events


def test_built_figures_are_palette_pngs_that_keep_their_description(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from gradpath.book import site
    from PIL import Image

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in range(5):
        ax.plot(range(50), [k * x ** 0.5 for x in range(50)], marker="o", label=f"line {k}")
    ax.legend()
    path = tmp_path / "fig.png"
    fig.savefig(path, metadata={"Description": "five curves"})
    plt.close(fig)
    before = path.stat().st_size
    site._compress_images(tmp_path)
    with Image.open(path) as image:
        assert image.mode == "P" and image.text.get("Description") == "five curves"
    assert path.stat().st_size < 0.6 * before
    assert not list(tmp_path.glob("*.tmp.png"))
