"""The README's example runs as written (documentation that cannot rot silently)."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_hosting_example_runs_and_maps_the_bar(capsys):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    (region,) = namespace["io_ranges"].values()
    assert (region.kind, region.base, region.size) == ("io", 0xC000, 16)
    assert capsys.readouterr().out == "IRQ 10 level 1\n"
