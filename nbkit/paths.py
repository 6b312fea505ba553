"""Where things live. Kernels start in different folders (JupyterLab, papermill, pytest), so nothing
here depends on the current directory."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(os.environ.get("NBKIT_ROOT", Path(__file__).resolve().parent.parent))
NOTEBOOKS = ROOT / "notebooks"
PARAMS = ROOT / "params"


def runs_root() -> Path:
    """Parent of every run folder; NBKIT_RUNS moves it (tests point it at a temporary folder)."""
    return Path(os.environ.get("NBKIT_RUNS", ROOT / "runs"))


def run_path(run: str | os.PathLike = "") -> Path:
    """The run folder a notebook's `run_dir` parameter names; "" means runs/interactive (JupyterLab use)."""
    path = Path(run) if str(run) else runs_root() / "interactive"
    return path if path.is_absolute() else ROOT / path


def run_dir(run: str | os.PathLike = "") -> Path:
    """`run_path`, created if it does not exist yet (what a stage about to write needs)."""
    path = run_path(run)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(*parts: str) -> Path:
    """Shared cache for things that are expensive to rebuild (the default local model); NBKIT_CACHE moves it."""
    path = Path(os.environ.get("NBKIT_CACHE", ROOT / ".cache")).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI, or None for any other kind of URI."""
    if not uri.startswith("sqlite:"):
        return None
    parsed = urlparse(uri)
    path = unquote(parsed.path)
    if parsed.netloc:  # sqlite://host/path is not a local file
        return None
    if path.startswith("//"):  # sqlite:////abs/path
        path = path[1:]
    return Path(path)
