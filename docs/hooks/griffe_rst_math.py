r"""Griffe extension for the API pages: the docstrings' reStructuredText maths, rendered by arithmatex.

The docstrings write maths as reStructuredText, which reads well in the source: a ``.. math::``
block and ``:math:`x``` inline. mkdocstrings renders docstrings as Markdown, where
``pymdownx.arithmatex`` expects ``$$ ... $$`` and ``$x$``. This extension rewrites the first into
the second when the site is built (``mkdocs.yml``: ``extensions``); the source files are not touched.

A block's content is the text after ``.. math::`` and every following line indented deeper than
the directive (blank lines included, as in reStructuredText); a blank line inside it separates two
equations, each its own ``$$`` block. An equation with ``&`` or ``\\`` and no environment of its own
is wrapped in ``aligned``, which is how Sphinx reads such a block too.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

INLINE = re.compile(r":math:`([^`]+)`")
DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)$")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def _equations(body: list[str]) -> list[list[str]]:
    """A block's equations, each its stripped lines: as in Sphinx, a blank line separates two equations."""
    equations: list[list[str]] = [[]]
    for line in body:
        if line.strip():
            equations[-1].append(line.strip())
        elif equations[-1]:
            equations.append([])
    return [_aligned(lines) for lines in equations if lines]


def _aligned(lines: list[str]) -> list[str]:
    """An equation with ``&`` or ``\\`` and no environment of its own, wrapped in ``aligned``."""
    joined = "\n".join(lines)
    if ("&" in joined or "\\\\" in joined) and "\\begin" not in joined:
        return ["\\begin{aligned}", *lines, "\\end{aligned}"]
    return lines


def rst_math_to_markdown(text: str) -> str:
    """``.. math::`` blocks -> ``$$`` blocks, ``:math:`x``` -> ``$x$``; everything else unchanged."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        directive = DIRECTIVE.match(lines[i])
        if directive is None:
            out.append(lines[i])
            i += 1
            continue
        indent = directive["indent"]
        body = [directive["first"]]
        i += 1
        while i < len(lines) and (not lines[i].strip() or _indent_of(lines[i]) > len(indent)):
            body.append(lines[i])
            i += 1
        n_trailing_blank = len(body) - len("\n".join(body).rstrip().splitlines())
        for number, equation in enumerate(_equations(body)):
            if number or (out and out[-1].strip()):
                out.append("")
            out.extend([f"{indent}$$", *(indent + line for line in equation), f"{indent}$$"])
        out.extend([""] * max(n_trailing_blank, 1 if i < len(lines) else 0))
    return INLINE.sub(r"$\1$", "\n".join(out))  # after the blocks: a role may span a line break


class RstMath(griffe.Extension):
    """Rewrites every docstring once the object tree is complete."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_math_to_markdown(obj.docstring.value)
