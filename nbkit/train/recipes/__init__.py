"""The project's own copies of the published Nova 2 Lite RFT recipes, and the few operations on them.

Why copies: `ModelTrainer.from_recipe` with a bare recipe name git-clones the recipes repository, and the
HyperPod CLI resolves names from its own checkout; neither works offline or is reviewable. A local
template per surface keeps each surface's key spellings (`lora_plus_lr_ratio` on SMTJ,
`loraplus_lr_ratio` on HyperPod), and the plan shows the fully resolved recipe that will run.
The only interpolation the recipes use, `${oc.select:path}` (and `${path}`), is resolved here, so OmegaConf
is not needed.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nbkit.errors import UserError

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class RecipeTemplate:
    """A template file here and the upstream recipe it copies (the name HyperPod's `--recipe` takes)."""

    file: str
    upstream: str

    @property
    def path(self) -> Path:
        return HERE / self.file


_RFT = "fine-tuning/nova/nova_2_0/nova_lite/RFT"
TEMPLATES: dict[str, RecipeTemplate] = {
    "smtj-full": RecipeTemplate("smtj_rft.yaml", f"{_RFT}/nova_lite_v2_smtj_p5_p5en_gpu_rft"),
    "smtj-lora": RecipeTemplate("smtj_lora_rft.yaml", f"{_RFT}/nova_lite_v2_smtj_p5_p5en_gpu_lora_rft"),
    "smhp-full": RecipeTemplate("smhp_rft.yaml", f"{_RFT}/nova_lite_2_0_p5_gpu_rft"),
    "smhp-lora": RecipeTemplate("smhp_lora_rft.yaml", f"{_RFT}/nova_lite_2_0_p5_gpu_lora_rft"),
    "eval": RecipeTemplate("rft_eval.yaml", "evaluation/nova/nova_2_0/nova_lite/nova_lite_2_0_p5_48xl_gpu_rft_eval"),
}

# The LoRA+ ratio key differs by surface; everything else about LoRA is spelled the same.
LORAPLUS_KEY = {"smtj": "lora_plus_lr_ratio", "smhp": "loraplus_lr_ratio"}


def template(surface: str) -> RecipeTemplate:
    if surface not in TEMPLATES:
        raise UserError(f"no Nova recipe template for {surface!r}; templates: {', '.join(TEMPLATES)}")
    return TEMPLATES[surface]


def load(surface: str) -> dict[str, Any]:
    """A fresh copy of a surface's template (unresolved: interpolations still in place)."""
    return yaml.safe_load(template(surface).path.read_text())


def get_path(recipe: dict[str, Any], dotted: str) -> Any:
    node: Any = recipe
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def set_path(recipe: dict[str, Any], dotted: str, value: Any) -> None:
    """Set an existing key. A missing key is a bug in the caller: the SDK would drop it with a warning,
    so a value the user chose would silently never reach the job."""
    parts = dotted.split(".")
    node: Any = recipe
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"recipe has no key {dotted!r}")
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        raise KeyError(f"recipe has no key {dotted!r}")
    node[parts[-1]] = value


def apply(recipe: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of `recipe` with dotted-path `values` set (every path must exist in the template)."""
    out = copy.deepcopy(recipe)
    for dotted, value in values.items():
        set_path(out, dotted, value)
    return out


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted paths -> the nested dict form `recipe_overrides` takes in ModelTrainer.from_recipe."""
    out: dict[str, Any] = {}
    for dotted, value in values.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


_REF = re.compile(r"^\$\{(?:oc\.select:)?([A-Za-z0-9_.]+)\}$")


def resolve(recipe: dict[str, Any]) -> dict[str, Any]:
    """Replace `${oc.select:a.b}` / `${a.b}` values by the value at that path (as OmegaConf.resolve does)."""
    out = copy.deepcopy(recipe)

    def walk(node: Any, depth: int = 0) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, depth) for k, v in node.items()}
        if isinstance(node, str) and (match := _REF.match(node)):
            if depth > 10:
                raise UserError(f"recipe interpolation {node!r} is circular")
            try:
                return walk(get_path(out, match[1]), depth + 1)
            except KeyError:
                raise UserError(f"recipe interpolation {node!r} points at a missing key") from None
        if isinstance(node, str) and "${" in node:
            raise UserError(f"recipe value {node!r}: only whole-value ${{path}} interpolations are supported")
        return node

    return walk(out)


def dump(recipe: dict[str, Any]) -> str:
    """Deterministic YAML text (the bytes uploaded, so equal recipes give equal content-addressed keys)."""
    return yaml.safe_dump(recipe, sort_keys=False, default_flow_style=False, width=1000)
