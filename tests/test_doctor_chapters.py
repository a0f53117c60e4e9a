"""The doctor's findings point at pages of the course that exist and teach their fix.

(Reads the chapters' notebooks, so it is not in the doctor's mutation-test list, whose staged copy
holds tests/ and the library only; tests/test_doctor_rules.py checks the map itself.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gradpath.doctor import CHAPTERS, KINDS

ROOT = Path(__file__).resolve().parents[1]


def _markdown(slug: str) -> str:
    notebook = json.loads((ROOT / "chapters" / f"{slug}.ipynb").read_text())
    return "\n".join("".join(c["source"]) for c in notebook["cells"]
                     if c["cell_type"] == "markdown").lower()


def test_each_kind_points_at_the_chapter_that_teaches_its_fix() -> None:
    expected = {"vanishing": "02-vanishing-gradients", "exploding": "03-exploding-gradients",
                "nonfinite": "03-exploding-gradients", "dead_units": "05-activation-functions",
                "saturation": "05-activation-functions", "update_ratio": "12-capstone",
                "clipping": "04-gradient-clipping", "loss_scale": "11-mixed-precision"}
    assert set(CHAPTERS) == set(KINDS) == set(expected)
    for kind, slug in expected.items():
        match = re.fullmatch(r"Gradient Flow, chapter (\d+): (.+) \(chapters/([\w-]+)\)",
                             CHAPTERS[kind])
        assert match, CHAPTERS[kind]
        assert match[3] == slug and int(slug[:2]) == int(match[1])
        title = match[2].split(",")[0].lower()
        assert f"# chapter {int(slug[:2])} — {title}" in _markdown(slug), (kind, title)
    # the fixes they point to are taught there: loss scaling with a GradScaler; the update ratio
    # read as the doctor reads it, and a learning rate raised on its advice
    mixed = _markdown("11-mixed-precision")
    assert "## 3. loss scaling" in mixed and "gradscaler" in mixed
    capstone = _markdown("12-capstone")
    assert "## 5. how to look" in capstone and "update-to-data ratio" in capstone
    assert "raise the learning rate" in capstone
