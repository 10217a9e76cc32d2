"""Numbers the README and the docs quote about a shipped study come from a generated file.

A section that quotes a run's findings opens with a marker naming the file that
benchmarks/findings.py wrote, `<!-- findings: ... docs/findings/NAME.md ... -->`; every
decimal number from there to the next heading must appear in that file (sign aside), so a
hand-edited or stale number fails here. The docs site's own build (`make docs`) fails on a
broken link."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- findings:.*?(docs/findings/[\w.-]+\.md).*?-->", re.S)
NUMBER = re.compile(r"(?<![\w.])[+\-−]?(\d+\.\d+)(?![\w.])")


def quoted_sections():
    for page in PAGES:
        text = page.read_text()
        for match in MARKER.finditer(text):
            rest = text[match.end():]
            end = re.search(r"^#{1,3} ", rest, re.M)
            yield page, REPO / match.group(1), rest[:end.start() if end else len(rest)]


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def test_pages_quote_findings_files():
    sources = {(page.name, source.name) for page, source, _ in quoted_sections()}
    assert ("README.md", "demo.md") in sources


@pytest.mark.parametrize("page, source, section", list(quoted_sections()),
                         ids=lambda x: x.name if isinstance(x, Path) else None)
def test_every_quoted_number_is_in_its_findings_file(page, source, section):
    assert source.is_file(), f"{page.name} quotes {source}, which does not exist: run benchmarks/findings.py"
    missing = sorted(numbers(section) - numbers(source.read_text()))
    assert not missing, f"{page.name} quotes numbers that {source.name} does not hold: {missing}"


def test_a_number_not_in_the_findings_file_is_caught(tmp_path):
    assert numbers("recall falls by 0.576 [0.513, 0.639]") == {"0.576", "0.513", "0.639"}
    assert numbers("x 1.5x, 3.86 vs −2.2, v2.13.0") == {"3.86", "2.2"}
