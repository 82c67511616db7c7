"""Every relative link in the documentation and every contract citation points at something that exists.

Links rot when files move; ``docs/contracts.md §N`` citations rot when sections are renumbered or a
document cites its neighbour's section. Both are checked here, from the files alone (no network).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from utils.paths import REPO

#: The documents whose relative links must resolve (deploy/README.md is optional).
LINKED_DOCS = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "models" / "roads" / "README.md",
    REPO / "deploy" / "README.md",
    *sorted((REPO / "services").glob("*/README.md")),
    REPO / "tests" / "data" / "README.md",
]
CONTRACTS = REPO / "docs" / "contracts.md"
#: Where citations live: the code, its tests, the docs and the configs (not .venv, var or test artifacts).
CITING_DIRS = ["services", "tests", "docs", "bench", "scripts", "deploy", "configs", "models"]
CITING_SUFFIXES = {".py", ".md", ".html", ".js", ".yaml", ".yml", ".toml", ".txt"}
#: ``§3`` or ``§ 3`` (written as an escape so this file does not cite anything itself), and "contract 3".
CITATION = re.compile("(?:\u00a7 ?|\\bcontract )(\\d+)\\b")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of a Markdown file outside fenced code blocks (a link in a shell example is not a link)."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for _, line in prose_lines(path):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"[`*_]|<[^>]+>", "", heading.group(1)).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        unique, n = slug, 0
        while unique in found:
            n += 1
            unique = f"{slug}-{n}"
        found.add(unique)
    return found


def contract_sections() -> dict[int, str]:
    """docs/contracts.md's numbered sections: number -> the section's text (heading included)."""
    sections: dict[int, str] = {}
    current = None
    for _, line in prose_lines(CONTRACTS):
        heading = re.match(r"^## (\d+)\. ", line)
        if heading:
            current = int(heading.group(1))
            sections[current] = ""
        elif line.startswith("## "):
            current = None
        if current is not None:
            sections[current] += line + "\n"
    return sections


def citing_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "Makefile"]
    for folder in CITING_DIRS:
        files += [p for p in sorted((REPO / folder).rglob("*")) if p.suffix in CITING_SUFFIXES and p.is_file()]
    return [p for p in files if p.is_file() and "vendor" not in p.parts]


def test_relative_links_in_the_docs_resolve():
    broken = []
    for doc in (d for d in LINKED_DOCS if d.is_file()):
        for number, line in prose_lines(doc):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                linked = (doc.parent / file_part).resolve() if file_part else doc
                if not linked.exists():
                    broken.append(f"{doc.relative_to(REPO)}:{number}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    broken.append(f"{doc.relative_to(REPO)}:{number}: {target} (no such heading)")
    assert broken == []


def test_contract_citations_name_existing_sections():
    sections = contract_sections()
    assert sorted(sections) == list(range(1, len(sections) + 1)) and len(sections) >= 8
    wrong = []
    for path in citing_files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for cited in CITATION.findall(line):
                if int(cited) not in sections:
                    wrong.append(f"{path.relative_to(REPO)}:{number}: section {cited} of docs/contracts.md")
    assert wrong == []


def test_documents_cite_the_section_that_describes_them():
    """A class whose docstring cites a section, and which the contracts name, cites a section naming it."""
    sections = contract_sections()
    wrong = []
    for path in sorted((REPO / "services" / "common" / "roadseg").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            cited = {int(n) for n in CITATION.findall(ast.get_docstring(node) or "")}
            naming = {n for n, text in sections.items() if f"`{node.name}`" in text}
            if cited and naming and not cited & naming:
                where = f"{path.relative_to(REPO)}: {node.name}"
                wrong.append(f"{where} cites {sorted(cited)}, described in {sorted(naming)}")
    assert wrong == []
