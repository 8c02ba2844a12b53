"""Every fact the code cites is documented inside the repository: no citation of notes a clone lacks, and
every `docs/<page>.md#<section>` a file points to exists (the page and the heading)."""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path

from ._tools import ROOT

# Forms in which engineering notes outside the repository were once cited (a relative path into a
# sibling folder of the clone, a note's file name or short name followed by a section sign and number,
# the vendor spec's message ids): a reader of a clone cannot follow any of them.
OUTSIDE = re.compile(
    r"\.\./shared|shared[/]reference|reference [a-z0-9-]+\.md"
    r"|\b(?:audio-perf|ops|twilio|elevenlabs)(?:\.md)? §|\breference §|\bAAPI-[A-Z]\b"
)
DOC_LINK = re.compile(r"docs/([a-z0-9-]+\.md)(?:#([\w-]+))?")
MD_LINK = re.compile(r"\]\(([\w./-]+\.md)(?:#([\w-]+))?\)")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".ini", ".cfg", ".sh", ".proto", ""}


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    paths = [ROOT / line for line in out.splitlines()]
    return [p for p in paths if p.suffix in TEXT_SUFFIXES and p.is_file() and p.name != Path(__file__).name]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = unicodedata.normalize("NFC", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", page.read_text(), re.MULTILINE)}


def test_the_slug_matches_githubs() -> None:
    assert _slug("Media audio path (`voicebridge-media-bench`)") == "media-audio-path-voicebridge-media-bench"
    assert _slug("G.711") == "g711"


def test_nothing_cites_files_outside_the_repository() -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _tracked_text_files()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert hits == []


def test_every_docs_link_names_a_page_and_section_that_exist() -> None:
    broken: list[str] = []
    seen = 0
    for path in _tracked_text_files():
        for match in DOC_LINK.finditer(path.read_text(errors="replace")):
            seen += 1
            page, anchor = ROOT / "docs" / match.group(1), match.group(2)
            if not page.is_file():
                broken.append(f"{path.relative_to(ROOT)}: {match.group(0)} (no such page)")
            elif anchor and anchor not in _anchors(page):
                broken.append(f"{path.relative_to(ROOT)}: {match.group(0)} (no such section)")
    assert seen > 20, "the scan found almost no links: is the pattern still right?"
    assert broken == []


def test_every_markdown_link_between_pages_resolves() -> None:
    broken: list[str] = []
    for path in _tracked_text_files():
        if path.suffix != ".md":
            continue
        for match in MD_LINK.finditer(path.read_text()):
            page, anchor = (path.parent / match.group(1)).resolve(), match.group(2)
            if not page.is_file():
                broken.append(f"{path.relative_to(ROOT)}: {match.group(0)} (no such page)")
            elif anchor and anchor not in _anchors(page):
                broken.append(f"{path.relative_to(ROOT)}: {match.group(0)} (no such section)")
    assert broken == []
