"""The documentation cannot rot: every runnable example on the site runs (test_docs_browser.py builds the site).

A runnable example is a fenced block opened with exactly ```` ```python ````. The blocks of one page run
in order in one namespace, like a notebook, so a later block may use what an earlier one defined. A
block whose only content is a ``--8<--`` include shows a source file (its code is tested elsewhere);
a block meant only to be read is fenced with another language (``text``, ``pycon``, ``bash``).
"""

from __future__ import annotations

import importlib.util
import re
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# A fence: its indent, three or more backticks, the info string, the body, the same fence closing.
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=ticks)[ \t]*$",
                   re.DOTALL | re.MULTILINE)
SNIPPET_ONLY = re.compile(r"^\s*(-{1,2}8<-{1,2}\s+\S.*\s*)+$")


@dataclass(frozen=True)
class CodeBlock:
    line: int  # 1-based line of the opening fence
    source: str

    def compiled(self, filename: str) -> types.CodeType:
        """Blank lines up to the fence first, so a traceback's line numbers are the page's own."""
        return compile("\n" * self.line + self.source, filename, "exec")


def runnable_blocks(text: str) -> list[CodeBlock]:
    """The ```python blocks of a markdown page, dedented, in order; snippet-only blocks left out."""
    blocks = []
    for match in FENCE.finditer(text):
        if match["info"].strip() != "python":
            continue
        indent = match["indent"]
        body = "".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                       for line in match["body"].splitlines(keepends=True))
        if SNIPPET_ONLY.match(body):
            continue
        blocks.append(CodeBlock(text.count("\n", 0, match.start()) + 1, body))
    return blocks


def pages_with_examples() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if runnable_blocks(p.read_text()))


def test_extractor_finds_python_blocks_and_skips_the_rest() -> None:
    page = "\n".join([
        "# t", "```python", "x = 1", "```", "```text", "not code", "```", '```python title="a.py"', "no = 1", "```",
        '=== "tab"', "", "    ```python", "    y = x + 1", "    ```", "```python", '--8<-- "reference/masks.py"', "```",
    ])
    blocks = runnable_blocks(page)
    assert [b.source for b in blocks] == ["x = 1\n", "y = x + 1\n"]
    assert [b.line for b in blocks] == [2, 13]


def test_a_failing_example_is_reported_at_its_line_of_the_page(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text("# broken\n\n```python\nx = 1\nassert x == 2, 'the docs lie'\n```\n")
    (block,) = runnable_blocks(page.read_text())
    with pytest.raises(AssertionError, match="the docs lie") as failure:
        exec(block.compiled(str(page)), {})
    assert failure.traceback[-1].lineno + 1 == 5  # pytest counts from 0; the assert is on line 5


def test_the_pages_this_site_promises_have_runnable_examples() -> None:
    """Guards the examples test itself: if the extractor stopped matching, nothing would run."""
    names = {p.relative_to(DOCS).as_posix() for p in pages_with_examples()}
    assert {"index.md", "conventions.md", "softmax.md", "attention.md", "pitfalls.md", "tolerances.md"} <= names


@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_python_example_in_the_docs_runs(page: Path) -> None:
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for block in runnable_blocks(page.read_text()):
        exec(block.compiled(str(page.relative_to(ROOT))), namespace)


def test_every_test_the_docs_cite_exists() -> None:
    """A page that names a test as its guard must name one that runs: `test_...` in backticks."""
    defined = {name for path in ROOT.glob("equivalence_tests/**/*.py")
               for name in re.findall(r"^\s*(?:async\s+)?def (test_\w+)", path.read_text(), re.MULTILINE)}
    cited = {(name, page.relative_to(DOCS).as_posix()) for page in DOCS.rglob("*.md")
             for name in re.findall(r"`(test_\w+)`", page.read_text())}
    assert cited, "no page cites a test; the pattern or the pages changed"
    missing = sorted(f"{page}: {name}" for name, page in cited if name not in defined)
    assert not missing, "the docs cite tests that do not exist:\n" + "\n".join(missing)


def load_rst_math() -> types.ModuleType:
    """docs/hooks/griffe_rst_math.py, the build's docstring-maths converter (not an importable package).

    It imports ``griffe`` (a docs extra, absent on the GPU machine): the tests that need it skip without it.
    """
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("griffe_rst_math", DOCS / "hooks" / "griffe_rst_math.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rst_maths_becomes_arithmatex_maths() -> None:
    rst = "\n".join([
        "Inline :math:`x_i` and one across a line :math:`a +",
        "b`.", "", ".. math::  y = 1,", "           z = 2", "", "After.", "", "    .. math::", "",
        "        a &= b \\\\", "        c &= d", "", "    Indented text.",
    ])
    expected = "\n".join([
        "Inline $x_i$ and one across a line $a +", "b$.", "", "$$", "y = 1,", "z = 2", "$$", "", "After.", "",
        "    $$", "    \\begin{aligned}", "    a &= b \\\\", "    c &= d", "    \\end{aligned}", "    $$", "",
        "    Indented text.",
    ])
    assert load_rst_math().rst_math_to_markdown(rst) == expected


def test_a_blank_line_in_a_math_block_separates_two_equations() -> None:
    """As in Sphinx: joined into one, the equations of a block would make one line wider than the page."""
    rst = "\n".join([".. math::", "", "    a = 1", "", "    b &= 2 \\\\", "    c &= 3", "", "After."])
    expected = "\n".join(["$$", "a = 1", "$$", "", "$$", "\\begin{aligned}", "b &= 2 \\\\", "c &= 3", "\\end{aligned}",
                          "$$", "", "After."])
    assert load_rst_math().rst_math_to_markdown(rst) == expected


def test_no_rst_maths_is_left_for_the_api_pages() -> None:
    """Every docstring the API pages can show is converted: no directive or role survives."""
    convert = load_rst_math().rst_math_to_markdown
    sources = [p for package in ("reference", "torch_impl", "triad") for p in (ROOT / package).rglob("*.py")]
    left = [str(p.relative_to(ROOT)) for p in sources
            if re.search(r"\.\. math::|:math:`", convert(p.read_text()))]
    assert not left, f"RST maths the converter missed in {left}"
