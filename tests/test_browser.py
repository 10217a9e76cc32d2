"""report.html rendered in a real browser: headless Chromium (Debian's `chromium`,
installed by `make test` when missing) driven through the DevTools protocol.

Skips, with the reason shown in the summary (pytest -rs), only where no Chromium could
be installed."""

import numpy as np
import pytest
from PIL import Image

from ouroboros.report.browser import find_chromium, render
from ouroboros.api import report as write_report
from test_report import make_loop_run

pytest.importorskip("websocket", reason="websocket-client is missing: pip install -e '.[test]'")
if find_chromium() is None:
    pytest.skip("no chromium on this machine and `make test` could not install it (apt-get install -y chromium)",
                allow_module_level=True)


def test_report_renders_in_chromium(tmp_path):
    page = write_report([make_loop_run(tmp_path / "run")])
    shot = tmp_path / "report.png"
    seen = render(page, shot, width=1100, max_height=1500)
    assert len(seen.images) == 9 and seen.broken_images == [], seen.images  # 2 plots, real.png, 2 x 3 grids
    assert all(i["naturalWidth"] > 0 for i in seen.images)
    assert seen.console_errors == []
    assert "classifier accuracy, guidance=1 (generation 2) vs guidance=1 (generation 0): 0.970 [0.920, 1.000] vs " \
           "0.910 [0.885, 0.935]; difference +0.060" in seen.text
    assert "Findings" in seen.text and "Samples" in seen.text
    with Image.open(shot) as im:  # the screenshot: the page's width, as tall as asked
        assert im.size == (1100, 1500)
        assert len(np.unique(np.asarray(im.convert("L")))) > 20  # not a blank page


def test_the_checks_see_broken_images_and_errors(tmp_path):
    """What the report test relies on: a missing image, console.error and an uncaught
    exception are each reported."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><title>bad</title><img src='missing.png' alt='gone'>"
                    "<script>console.error('boom'); not_defined()</script><p>some text</p>")
    seen = render(page)
    assert seen.broken_images == ["gone"]
    assert any("missing.png" in e for e in seen.console_errors)
    assert "boom" in seen.console_errors
    assert any("not_defined" in e for e in seen.console_errors)
    assert seen.text == "some text"
