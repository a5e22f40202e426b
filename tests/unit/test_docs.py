"""The docs stay true: the README's example event leads to the decision it shows
(real output of `replay`), and every document the README, the docs, the policy or
a module names exists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "closure-monitor")


def _block_after(text: str, marker: str) -> str:
    """The fenced code block that follows an HTML comment `marker`."""
    match = re.search(rf"<!-- {marker} -->\s*```json\n(.*?)```", text, re.S)
    assert match, f"README: no json block after <!-- {marker} -->"
    return match.group(1)


def test_the_readme_example_event_leads_to_the_decision_shown(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    event = json.loads(_block_after(readme, "example-event"))
    shown = json.loads(_block_after(readme, "example-decision"))
    log = tmp_path / "event.jsonl"
    log.write_text(json.dumps(event) + "\n")
    result = subprocess.run([CLI, "replay", str(log)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert decisions == [shown]


def _linked(path: Path) -> set[str]:
    """Relative targets of the Markdown links in a file (no URLs, no anchors)."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    return {t for t in targets if "://" not in t}


def test_every_document_linked_from_the_readme_and_the_docs_exists() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 6
    for page in pages:
        for target in _linked(page):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_every_document_named_in_the_code_and_the_policy_exists() -> None:
    named = re.compile(r"(?<![\w/.-])((?:docs|deploy|schemas|bench|tests)/"
                       r"[\w./-]+\.(?:md|json|yaml|yml|py))")
    files = [*ROOT.glob("streams/**/*.py"), *ROOT.glob("engine/src/*.rs"),
             *ROOT.glob("deploy/**/*.yaml"), ROOT / "deploy" / "README.md"]
    seen = 0
    for path in files:
        text = path.read_text()
        assert "DESIGN.md" not in text, f"{path}: names a DESIGN.md this repository has not"
        for target in named.findall(text):
            seen += 1
            # (from the repository's root, or from a folder above the file: the crate's)
            bases = [ROOT, *(p for p in path.parents if ROOT in p.parents)]
            assert any((base / target.rstrip(".")).exists() for base in bases), \
                f"{path} names missing {target}"
    assert seen > 0
