"""mkdocs hook: the maths renderer ships with the site, so every formula renders with no network.

KaTeX comes from npm: ``package.json`` pins its version and ``package-lock.json`` its digest, and
``npm ci`` installs it into ``node_modules/`` (CI runs it first; nothing of KaTeX is committed).
This hook adds the files the pages load to the built site under ``assets/katex/``, where
``mkdocs.yml``'s ``extra_javascript`` and ``extra_css`` point: the script, its auto-render extension,
the stylesheet and the fonts that the stylesheet names (relative to itself, so they resolve there).

When ``node_modules/`` holds no KaTeX, or another version than ``package.json`` pins, the hook runs
``npm ci`` once, so the README's pip commands still build the site; without npm the build stops with
what to install. It never falls back to a CDN: a page that needs the network to show its maths is
the defect this hook removes.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "node_modules" / "katex"
SITE_FOLDER = "assets/katex"
# What the pages load, relative to KaTeX's dist/; the stylesheet's fonts are added from dist/fonts/.
LOADED = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js")

log = logging.getLogger(f"mkdocs.hooks.{Path(__file__).stem}")


def pinned_version() -> str:
    return json.loads((ROOT / "package.json").read_text())["dependencies"]["katex"]


def installed_version() -> str | None:
    manifest = PACKAGE / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.is_file() else None


def ensure_installed() -> None:
    """KaTeX at the pinned version in node_modules/, installed by ``npm ci`` if it is not."""
    pinned, installed = pinned_version(), installed_version()
    if installed == pinned:
        return
    npm = shutil.which("npm")
    found = f"version {installed}" if installed else "nothing"
    if npm is None:
        raise PluginError(f"the docs need KaTeX {pinned} (package.json) in {PACKAGE}, found {found}, and npm is "
                          f"not on PATH: install Node.js and npm, then run `npm ci` in {ROOT}")
    log.info("KaTeX %s not installed (found %s): running `npm ci` in %s", pinned, found, ROOT)
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0 or installed_version() != pinned:
        raise PluginError(f"`npm ci` in {ROOT} did not install KaTeX {pinned} (exit {result.returncode}):\n"
                          f"{result.stdout}{result.stderr}")


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    ensure_installed()
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    dist = PACKAGE / "dist"
    for source in [*(dist / name for name in LOADED), *sorted((dist / "fonts").iterdir())]:
        uri = f"{SITE_FOLDER}/{source.relative_to(dist).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(source)))
    return files
