"""mkdocs hook: the getting-started page shows what ``triad check`` prints, run while the site is built.

The output on the page cannot go stale because nobody types it: every build runs ``python -m triad check``
on this checkout (a few seconds) and puts what it printed, unedited, where ``docs/index.md`` holds the
marker line ``MARKER``, followed by the machine it ran on. A check that fails, a command that breaks, or a
page without the marker stops the build.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
PAGE = "index.md"
MARKER = "<!-- triad check: its output, printed by docs/hooks/triad_check_output.py -->"
COLUMNS = 110  # the terminal width the command is told; it fits the page's code blocks at 1280 px

_printed: dict[str, str] = {}


def run_triad_check() -> str:
    """What ``triad check`` prints when piped, at ``COLUMNS`` columns; a PluginError unless it exits 0."""
    env = {**os.environ, "COLUMNS": str(COLUMNS), "NO_COLOR": "1", "TERM": "dumb"}
    result = subprocess.run([sys.executable, "-m", "triad", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise PluginError(f"`triad check` exited {result.returncode} while building the docs:\n"
                          f"{result.stdout}{result.stderr}")
    return result.stdout


def machine_line() -> str:
    day = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return (f"Printed on {day} by the build: torch {version('torch')}, NumPy {version('numpy')}, "
            f"Python {platform.python_version()}, {os.cpu_count()} CPU cores, `COLUMNS={COLUMNS}`.")


def on_pre_build(config: MkDocsConfig) -> None:
    _printed["output"] = run_triad_check()


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if markdown.count(MARKER) != 1:
        raise PluginError(f"docs/{PAGE} must hold the line {MARKER!r} once, where `triad check`'s output goes")
    block = f"```text\n$ triad check\n{_printed['output'].rstrip()}\n```\n\n{machine_line()}"
    return markdown.replace(MARKER, block)
