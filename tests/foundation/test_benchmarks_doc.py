"""docs/benchmarks.md against itself and the benchmark scripts: prose that points at
another run names that run's date, and figures no committed command reproduces say so.
Nothing is run; the file's text is read.
"""

from __future__ import annotations

import re

from tests.conftest import REPO

DOC = REPO / "docs" / "benchmarks.md"
DATE = r"\d{4}-\d{2}-\d{2}"


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _paragraphs(text: str) -> list[str]:
    """Blank-line paragraphs and list items, each on one line."""
    parts = re.split(r"\n\s*\n|\n(?=- )", text)
    return [" ".join(p.split()) for p in parts if p.strip()]


def test_prose_about_the_detection_run_names_its_date() -> None:
    """A sentence that points at the detection run "above" says which run (its date), and
    where it gives the date beside the pointer, that is the date of the run above now:
    a rerun of detection_quality.py must not leave older claims reading as current."""
    text = DOC.read_text(encoding="utf-8")
    quality = _section(text, "Detection quality (backtest)")
    measured = re.search(rf"^Measured ({DATE}) ", quality, re.M)
    assert measured
    pointers = re.compile(r"(?:Detection quality|quality|run) above", re.I)
    checked = 0
    for paragraph in _paragraphs(text):
        for sentence in re.split(r"(?<=[.;])\s+(?=[A-Z])", paragraph):
            if not pointers.search(sentence):
                continue
            checked += 1
            assert re.search(DATE, sentence), f"no date in: {sentence}"
            for date in re.findall(rf"(?:quality|run) above,? \(({DATE})", sentence):
                assert date == measured.group(1), f"run above is {measured.group(1)}: {sentence}"
    assert checked >= 3


def test_litellm_rows_come_with_their_setup() -> None:
    """The LiteLLM rows need a venv that nothing in the repository creates: the doc gives
    the commands, at the path benchmarks/gateway_overhead.py reads."""
    script = (REPO / "benchmarks" / "gateway_overhead.py").read_text(encoding="utf-8")
    venv = re.search(r'^LITELLM_VENV = Path\("([^"]+)"\)$', script, re.M)
    assert venv
    overhead = _section(DOC.read_text(encoding="utf-8"), "Gateway overhead")
    assert "| litellm | json |" in overhead
    flat = " ".join(overhead.split())
    assert f"python3 -m venv {venv.group(1)} && {venv.group(1)}/bin/pip install" in flat


def test_figures_without_a_committed_command_say_so() -> None:
    """Figures from tools or throwaway scripts that are not in the repository are marked
    as not reproducible from it (the project's rule: figures come with their command)."""
    text = DOC.read_text(encoding="utf-8")
    committed = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "benchmarks").glob("*.py"))
    assert "py-spy" not in committed and "py_spy" not in committed
    markers = ("(py-spy,", '"TeamRunaway only" rows', "stand-alone replay")
    for marker in markers:
        found = [p for p in _paragraphs(text) if marker in p]
        assert found, marker
        for paragraph in found:
            assert "not reproducible from the repository" in paragraph.lower(), paragraph
