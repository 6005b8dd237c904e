"""The front page links every page of the manual in docs/, every link of the documentation resolves, and every
docs/ page the code points to exists."""

import re

from tests.environment import REPO

LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")
PAGES = sorted((REPO / "docs").glob("*.md"))


def test_the_front_page_links_every_page_of_the_manual():
    linked = {match.group(1) for match in LINK.finditer((REPO / "README.md").read_text())}
    assert len(PAGES) > 10
    assert {f"docs/{page.name}" for page in PAGES} <= linked


def test_every_link_of_the_documentation_resolves():
    broken = [f"{page.relative_to(REPO)}: {match.group(1)}" for page in [REPO / "README.md", *PAGES]
              for match in LINK.finditer(page.read_text())
              if "://" not in match.group(1) and not (page.parent / match.group(1)).exists()]
    assert broken == []


def test_every_docs_page_the_code_names_exists():
    named = re.compile(r"docs/([a-z_]+\.md)")
    sources = [p for pattern in ("*.py", "*.sh", "*.yaml") for p in REPO.rglob(pattern)
               if p.relative_to(REPO).parts[0] not in {"outputs", "data", ".git"}]
    missing = sorted({f"{p.relative_to(REPO)}: docs/{m}" for p in sources for m in named.findall(p.read_text())
                      if not (REPO / "docs" / m).is_file()})
    assert missing == []
