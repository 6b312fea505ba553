"""Figures of a data profile: lengths against the budget, field and role distributions, duplicates.

Each function returns a closed matplotlib Figure (so it shows once, where the notebook puts it).
"""

from __future__ import annotations

from typing import Any

from nbkit.data.profile import DataProfile, roles_and_fields

_COLORS = {"train": "tab:blue", "eval": "tab:orange"}


def _figure(ncols: int, width: float = 5.0, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    plt.close(fig)
    return fig, axes[0]


def plot_lengths(profile: DataProfile, max_prompt_tokens: int = 0, max_new_tokens: int = 0) -> Any:
    """Histograms of prompt and reference-answer lengths per split, with the budget as a dashed line."""
    unit = "tokens" if profile.settings.get("tokenizer") != "regex approximation" else "tokens (approx.)"
    fig, (left, right) = _figure(2)
    for ax, key, budget, title in (
        (left, "prompt_tokens", max_prompt_tokens, "Prompt length"),
        (right, "reference_tokens", max_new_tokens, "Reference answer length"),
    ):
        values = [r[key] for r in profile.lengths]
        top = max(values + [budget if budget and budget < 4 * max(values + [1]) else 0, 1])
        bins = list(range(0, top + 2)) if top <= 60 else 40  # one bin per token count when they are few
        for split in profile.splits:
            data = [r[key] for r in profile.lengths if r["split"] == split]
            ax.hist(data, bins=bins, range=(0, top + 1), histtype="step", linewidth=1.6, label=f"{split} (n={len(data)})",
                    color=_COLORS.get(split))
        if budget and budget <= top:
            ax.axvline(budget, color="tab:red", linestyle="--", label=f"budget {budget}")
        elif budget:
            ax.text(0.98, 0.6, f"budget {budget} is\nbeyond the axis", transform=ax.transAxes, ha="right",
                    fontsize=8, color="tab:red")
        ax.set_title(title)
        ax.set_xlabel(f"length ({unit})")
        ax.set_ylabel("records")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_distributions(profile: DataProfile, max_charts: int = 6) -> Any:
    """Bar charts of roles, reference-answer kinds and each categorical extra field, per split."""
    charts = list(roles_and_fields(profile).items())[:max_charts]
    fig, axes = _figure(len(charts), width=4.2)
    splits = list(profile.splits)
    width = 0.8 / max(1, len(splits))
    for ax, (name, per_split) in zip(axes, charts, strict=True):
        categories = sorted({c for counts in per_split.values() for c in counts})
        for i, split in enumerate(splits):
            counts = per_split.get(split, {})
            xs = [j + i * width for j in range(len(categories))]
            ax.bar(xs, [counts.get(c, 0) for c in categories], width=width, label=split, color=_COLORS.get(split))
        ax.set_xticks([j + width * (len(splits) - 1) / 2 for j in range(len(categories))])
        ax.set_xticklabels(categories, rotation=30, ha="right", fontsize=8)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("value")
        ax.set_ylabel("messages" if name == "roles" else "records")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_duplicates(profile: DataProfile) -> Any:
    """How many duplicate ids, extra prompt copies, conflicting prompts and leaked eval prompts there are."""
    rows = {
        "duplicate ids": {s: sum(d["count"] - 1 for d in profile.duplicates if d["kind"] == "id" and d["split"] == s)
                          for s in profile.splits},
        "extra prompt copies": {s: sum(d["count"] - 1 for d in profile.duplicates
                                       if d["kind"] == "prompt" and d["split"] == s) for s in profile.splits},
        "conflicting prompts": {s: sum(1 for c in profile.conflicts if s in c["split"].split("+"))
                                for s in profile.splits},
        "eval prompts in train": {"eval": sum(1 for x in profile.leakage if x["kind"] == "prompt")},
    }
    fig, (ax,) = _figure(1, width=7.0)
    labels = list(rows)
    splits = list(profile.splits)
    width = 0.8 / max(1, len(splits))
    for i, split in enumerate(splits):
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [rows[label].get(split, 0) for label in labels], width=width, label=split,
               color=_COLORS.get(split))
    ax.set_xticks([j + width * (len(splits) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, fontsize=9)
    if not any(v for row in rows.values() for v in row.values()):
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, "none found", transform=ax.transAxes, ha="center", fontsize=12, color="tab:green")
    ax.set_title("Duplicates, conflicts and leakage (0 everywhere is the goal)")
    ax.set_xlabel("check")
    ax.set_ylabel("records")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
