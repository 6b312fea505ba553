"""What a sweep runs: a grid of parameter values (and seeds) over a base params file.

A grid comes from `--grid SECTION.NAME=V1,V2` options or a `sweep:` block in the params file:

    sweep:
      grid:
        04_launch_training.learning_rate: [1.0e-3, 3.0e-3]
      points:                      # extra points beside the grid (the editor's "add to sweep" writes these)
        - {04_launch_training.learning_rate: 5.0e-4, 04_launch_training.lora_rank: 8}
      seeds: 2                     # each point trained with seeds 0 and 1 (04_launch_training.seed)
      jobs: 1                      # points run at once (default: what fits the cores and memory)

Every value is YAML, as in `nbkit run --set`. Seeds vary the training seed only, so the stages before
training stay shared between points.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nbkit.errors import UserError

SEED_KEY = "04_launch_training.seed"


@dataclass(frozen=True)
class Point:
    """One configuration of the sweep: its values (`SECTION.NAME` -> value) and its training seed."""

    values: tuple[tuple[str, Any], ...]
    seed: int | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """The values that define the point, the seed included (what sweep.json and MLflow record)."""
        out = dict(self.values)
        if self.seed is not None:
            out[SEED_KEY] = self.seed
        return out

    @property
    def config(self) -> tuple[tuple[str, Any], ...]:
        """The point without its seed: points that differ only in the seed are one configuration."""
        return self.values

    def overrides(self) -> list[str]:
        """`--set` items that turn the base params file into this point."""
        return [f"{key}={_yaml(value)}" for key, value in self.settings.items()]

    @property
    def name(self) -> str:
        """A folder name a person can read: `learning_rate-0.003_seed-1` (the parameter names without section)."""
        parts = [f"{key.rsplit('.', 1)[-1]}-{_yaml(value)}" for key, value in self.settings.items()]
        text = "_".join(parts) or "base"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:120]


@dataclass
class SweepSpec:
    """The grid, the extra points, the number of seeds and the parallelism of a sweep."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    seeds: int = 0
    jobs: int | None = None

    def expand(self) -> list[Point]:
        """Every grid combination (in the order the grid lists them), then the extra points; each repeated
        once per seed. Duplicates are dropped so a point runs once."""
        keys = list(self.grid)
        configs = [tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*self.grid.values())]
        configs += [tuple(p.items()) for p in self.points]
        seeds: list[int | None] = list(range(self.seeds)) if self.seeds else [None]
        out: list[Point] = []
        for config in configs:
            for seed in seeds:
                point = Point(config, seed)
                if point not in out:
                    out.append(point)
        if not out or out == [Point((), None)]:
            raise UserError("the sweep has no points: give --grid SECTION.NAME=V1,V2 (or a sweep: grid in the "
                            "params file) and/or --seeds N")
        return out


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """`SECTION.NAME=V1,V2` options as {SECTION.NAME: [V1, V2]} (values read as YAML)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or "." not in key or not text.strip():
            raise UserError(f"--grid {item!r} is not SECTION.NAME=V1,V2; e.g. "
                            "--grid 04_launch_training.learning_rate=0.001,0.003")
        try:
            values = [yaml.safe_load(v) for v in text.split(",")]
        except yaml.YAMLError as exc:
            raise UserError(f"--grid {item!r}: a value is not valid YAML ({exc})") from None
        if key in grid:
            raise UserError(f"--grid names {key} twice; list all its values in one option")
        grid[key] = values
    return grid


def from_file(path: str | Path) -> SweepSpec:
    """The `sweep:` block of a params file (an empty spec when it has none)."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the params file {path}: {exc}") from None
    block = raw.get("sweep") if isinstance(raw, dict) else None
    if block is None:
        return SweepSpec()
    if not isinstance(block, dict):
        raise UserError(f"{path}: `sweep:` must be a mapping with grid, points, seeds, jobs")
    unknown = sorted(set(block) - {"grid", "points", "seeds", "jobs"})
    if unknown:
        raise UserError(f"{path}: unknown sweep key(s) {', '.join(unknown)}; valid keys are grid, points, seeds, jobs")
    grid = block.get("grid") or {}
    points = block.get("points") or []
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise UserError(f"{path}: sweep.grid maps SECTION.NAME to a non-empty list of values")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise UserError(f"{path}: sweep.points is a list of mappings SECTION.NAME -> value")
    seeds, jobs = block.get("seeds", 0), block.get("jobs")
    for name, value, low in (("seeds", seeds, 0), ("jobs", jobs, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise UserError(f"{path}: sweep.{name} = {value!r} must be an integer of at least {low}")
    return SweepSpec({str(k): list(v) for k, v in grid.items()}, [dict(p) for p in points], seeds or 0, jobs)


def combine(file_spec: SweepSpec, grid: dict[str, list[Any]], seeds: int | None, jobs: int | None) -> SweepSpec:
    """The command line's grid, seeds and jobs over the file's: a key given on the command line replaces
    the file's values for that key."""
    return SweepSpec(file_spec.grid | grid, list(file_spec.points), file_spec.seeds if seeds is None else seeds,
                     jobs if jobs is not None else file_spec.jobs)


def add_point(path: str | Path, values: dict[str, Any]) -> int:
    """Append one point (`SECTION.NAME` -> value) to a params file's `sweep.points`, keeping everything else
    of the file (comments included); returns how many points the file lists now."""
    from ruamel.yaml import YAML

    path = Path(path)
    yml = YAML()
    yml.preserve_quotes = True
    data = yml.load(path.read_text()) if path.exists() else None
    if data is None:
        data = {}
    sweep = data.setdefault("sweep", {})
    points = sweep.setdefault("points", [])
    point = {str(k): v for k, v in values.items()}
    if point not in [dict(p) for p in points]:
        points.append(point)
    with path.open("w") as fh:
        yml.dump(data, fh)
    return len(points)


def _yaml(value: Any) -> str:
    """A value as it is written in YAML on one line (what `--set` reads back)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
