"""README.md against the repository: its relative links resolve inside the repository,
and its list of generated files is the Makefile's."""

from __future__ import annotations

import re

from tests.conftest import REPO

README = REPO / "README.md"
LINK_RE = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _makefile_generated() -> list[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^GENERATED := (.+)$", text, re.MULTILINE)
    assert match, "Makefile has no GENERATED := line"
    return match.group(1).split()


def test_relative_links_stay_in_the_repository_and_exist() -> None:
    links = [link for link in LINK_RE.findall(README.read_text()) if "://" not in link]
    assert links
    for link in links:
        path = (REPO / link).resolve()
        assert path.is_relative_to(REPO), f"{link} points outside the repository"
        assert path.exists(), f"{link} does not exist"


def test_generated_files_listed_are_the_makefiles() -> None:
    text = README.read_text()
    paragraph = text[text.index("Generated files (") :].split("\n\n")[0]
    listed = re.findall(r"`([^`]+)`", paragraph.split(")")[0])
    assert [p.split("/")[0] for p in listed if p.endswith((".yml", ".json"))] == [
        "alert-rules",
        "dashboards",
    ]
    docs = [p for p in listed if p.startswith("docs/")]
    assert sorted(["alert-rules", "dashboards", *docs]) == sorted(_makefile_generated())
