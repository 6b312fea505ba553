"""How a report's figures were produced: seed, threads, library versions, CPU math mode, model and data hashes.

Why: the same seeded run gives other numbers with another torch, another thread count on fast math, or other
weights or data; a figure that does not say how it was made cannot be checked or repeated. Every notebook's
header shows this (`report.show_params` calls `show`), and the stages that write records keep `collect()`.
Hashes are SHA-256 of the file bytes (a folder: of its file names and contents), cached per file size and
modification time so a large model is read once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from nbkit import REPRODUCIBLE_MATH, paths

PACKAGES = ("torch", "transformers", "trl", "peft")
_CACHE_FILE = "hashes.json"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, from the cache when its size and modification time are unchanged."""
    p = Path(path).resolve()
    stat = p.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    cache_path = paths.cache_dir("provenance") / _CACHE_FILE
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(str(p))
    if isinstance(hit, dict) and hit.get("stamp") == stamp:
        return hit["sha256"]
    digest = hashlib.sha256()
    with p.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    cache[str(p)] = {"stamp": stamp, "sha256": digest.hexdigest()}
    tmp = cache_path.with_name(f".{_CACHE_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_path)
    except OSError:  # the cache is a courtesy; the hash is still right
        tmp.unlink(missing_ok=True)
    return cache[str(p)]["sha256"]


def folder_sha256(path: str | os.PathLike) -> str:
    """SHA-256 over a folder's files (relative names and contents): a model's identity. Hidden files and
    nbkit's own notes in it (`nbkit_*`, e.g. which job wrote it) are not part of the model."""
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(f for f in root.rglob("*") if f.is_file() and not f.name.startswith("nbkit_") and not any(
            part.startswith(".") for part in f.relative_to(root).parts)):
        digest.update(f"{file.relative_to(root).as_posix()}\0{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """Installed versions of the libraries a figure's numbers depend on (read without importing them)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def math_mode() -> dict[str, str]:
    """The CPU math settings nbkit pins (see nbkit/__init__.py) and the kernels torch really uses, once loaded."""
    out = {name: os.environ.get(name, "unset") for name in REPRODUCIBLE_MATH}
    out["NBKIT_FAST_MATH"] = os.environ.get("NBKIT_FAST_MATH", "unset")
    torch = sys.modules.get("torch")
    out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability() if torch is not None else "torch not loaded"
    return out


def torch_threads(p: Any) -> str:
    """Threads of the torch that makes this notebook's numbers: its `threads` parameter (or torch's default),
    the training worker's `local.threads`, or none for notebooks that run no model."""
    if hasattr(p, "threads"):
        import torch

        return f"{p.threads} (threads parameter)" if p.threads else f"{torch.get_num_threads()} (torch default)"
    if isinstance(getattr(p, "local", None), dict):
        threads = p.local.get("threads")
        return (f"{threads} (training worker, local.threads)" if threads is not None
                else "the training worker's default (local.threads, in the spec table)")
    return "no model runs in this notebook"


def models(run_dir: str | os.PathLike, p: Any = None) -> dict[str, dict[str, str]]:
    """The run's base model (the folder it measured or trains from) and tuned model, with their hashes."""
    from nbkit.layout import RunLayout

    layout = RunLayout(run_dir)
    found = {"base": layout.model, "tuned": layout.training / "checkpoints" / "final"}
    for role, name in (("base", "model"), ("tuned", "tuned_model")):
        value = str(getattr(p, name, "") or "")
        if value and Path(value).is_dir():
            found[role] = Path(value)
    return {role: {"path": str(folder), "sha256": folder_sha256(folder)} for role, folder in found.items()
            if (folder / "config.json").is_file()}


def data(run_dir: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The run's train and eval splits with their hashes (those that exist)."""
    from nbkit.layout import RunLayout

    layout = RunLayout(run_dir)
    return {split: {"path": str(layout.split(split)), "sha256": file_sha256(layout.split(split))}
            for split in ("train", "eval") if layout.split(split).is_file()}


def collect(p: Any) -> dict[str, Any]:
    """Everything a report header states about how its figures were produced."""
    run_dir = getattr(p, "run_dir", "")
    return {"seed": getattr(p, "seed", None), "torch_threads": torch_threads(p), "versions": versions(),
            "math": math_mode(), "models": models(run_dir, p), "data": data(run_dir)}


def lines(prov: dict[str, Any]) -> list[str]:
    """The provenance as short lines (plain text reports, logs); 12 hex digits of a hash identify a file."""
    held = "; ".join(f"{role} {m['path']} sha256 {m['sha256'][:12]}" for role, m in prov["models"].items())
    splits = "; ".join(f"{split} {Path(d['path']).name} sha256 {d['sha256'][:12]}" for split, d in prov["data"].items())
    return [
        f"seed {prov['seed']}; torch threads {prov['torch_threads']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        "CPU math: " + ", ".join(f"{k}={v}" for k, v in prov["math"].items()),
        "models: " + (held or "none in the run yet"),
        "data: " + (splits or "none in the run yet"),
    ]
