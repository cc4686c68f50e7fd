"""The documentation site builds with --strict (every link and anchor resolves, the rule table
is generated), the README stays a five-minute read, and no page speaks of how the product was
developed."""

import os
import re
import subprocess
import sys

import yaml

from tests.conftest import ROOT

DOCS = ROOT / "docs"


def pages() -> list[str]:
    return sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md") if "_hooks" not in path.parts)


def test_the_site_builds_strictly_with_the_generated_rule_table(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    diagnosis = (tmp_path / "site" / "diagnosis" / "index.html").read_text()
    assert "<!-- generated" not in diagnosis
    assert "update ratio &gt; 0.01 sustained" in diagnosis and "<code>gradients_accumulate</code>" in diagnosis


def test_every_page_is_in_the_navigation():
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.SafeLoader)

    def listed(entries) -> list[str]:
        found = []
        for entry in entries:
            for value in entry.values():
                found += listed(value) if isinstance(value, list) else [value]
        return found

    assert sorted(listed(config["nav"])) == pages()


def test_the_readme_is_a_short_read_and_links_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    linked = set(re.findall(r"\]\(docs/([^)#]+\.md)", readme))
    assert {"getting-started.md", "client.md", "diagnosis.md", "operations.md"} <= linked


def test_no_page_speaks_of_how_the_product_was_developed():
    history = re.compile(
        r"\b(?:first|second|third|\w+th) session\b|\bthis session\b|\bissue #?\d+|\bcommit [0-9a-f]{7,}\b"
        r"|\bbefore this change\b|\bFigures of the\b",
        re.IGNORECASE,
    )
    found = {
        str(path.relative_to(ROOT)): history.findall(path.read_text())
        for path in [ROOT / "README.md", *(DOCS / page for page in pages())]
    }
    assert {path: words for path, words in found.items() if words} == {}
