"""What a job spec implies before anything runs: steps, rollouts, tokens, reward calls, time and money.

Why: the documented knobs (batch size, generations, max new tokens, epochs) multiply into numbers nobody
computes in their head, and the first time a user sees them should not be on the bill. Everything here is
arithmetic on the spec plus a dated prices file (`prices.json` beside this module; a user file overrides
any subset of its keys). Estimates that rest on assumptions (throughput, reward latency) list them in
`Derived.assumptions`, so a reader knows what to distrust.

Conventions (see `nbkit.train.spec`): global_batch_size counts rollouts per step; a step consumes
global_batch_size / number_generation distinct prompts; an epoch is ceil(n_train / prompts_per_step) steps.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbkit.errors import UserError
from nbkit.layout import read_json_object
from nbkit.train.spec import (
    SURFACE_TITLES,
    JobSpec,
    effective,
    ranges,
    surface_default,
    with_surface_defaults,
)

PRICES_FILE = Path(__file__).with_name("prices.json")


@dataclass
class Derived:
    """Derived quantities of one spec on one surface; None = cannot be estimated (reason in assumptions)."""

    surface: str
    n_train: int
    prompts_per_step: int
    rollouts_per_step: int
    steps_per_epoch: int
    total_steps: int
    epochs_effective: float
    total_rollouts: int
    completion_tokens_max: int
    completion_tokens_expected: int
    tokens_expected: int | None
    reward_calls: int
    validation_reward_calls: int
    lambda_concurrency: int | None
    lambda_invocations: int | None
    lambda_waves_per_step: int | None
    instance_type: str | None
    instance_count: int | None
    step_time_s: float | None
    wall_time_s: float | None
    instance_hours: float | None
    usd_per_instance_hour: float | None
    compute_cost_usd: float | None
    lambda_cost_usd: float | None
    cost_usd: float | None
    prices_as_of: str
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lambda_samples_per_call: int | None = None
    validations: int = 0  # validation passes of a local job (step 0, every eval_every steps, the last step)
    # What the time and cost estimates rest on (step_time_source, lambda_batch_size, prices_as_of, ...): what
    # notebook 05 quotes when it sets the estimate against the actual run.
    basis: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str, str]]:
        """(quantity, value, how it is computed) rows for a plain table (widgets are blank in HTML)."""
        money = _money
        rows = [
            ("surface", SURFACE_TITLES.get(self.surface, self.surface), ""),
            ("training prompts", f"{self.n_train:,}", "records in train_data"),
            ("prompts per step", f"{self.prompts_per_step:,}", "global_batch_size / number_generation"),
            ("rollouts per step", f"{self.rollouts_per_step:,}", "global_batch_size"),
            ("steps per epoch", f"{self.steps_per_epoch:,}", "ceil(training prompts / prompts per step)"),
            ("total steps", f"{self.total_steps:,}", "max_steps, or epochs x steps per epoch"),
            ("epochs (effective)", f"{self.epochs_effective:.2f}", "total steps x prompts per step / prompts"),
            ("total rollouts", f"{self.total_rollouts:,}", "total steps x rollouts per step"),
            ("completion tokens (max)", f"{self.completion_tokens_max:,}", "total rollouts x max_new_tokens"),
            ("completion tokens (expected)", f"{self.completion_tokens_expected:,}", "x mean completion fill"),
            ("reward calls (samples scored)", f"{self.reward_calls:,}", "one per rollout"),
        ]
        if self.validation_reward_calls:
            rows.append(("validation reward calls", f"{self.validation_reward_calls:,}",
                         "eval_prompts x validations (step 0, every eval_every steps, the last step)"))
        if self.lambda_invocations is not None:
            rows += [
                ("Lambda concurrency limit", _count(self.lambda_concurrency), "aws setting or surface default"),
                ("Lambda invocations", _count(self.lambda_invocations), "rollouts / lambda_batch_size per step"),
                ("Lambda waves per step", _count(self.lambda_waves_per_step), "invocations per step / concurrency"),
            ]
        if self.instance_count is not None and self.instance_type is not None:
            rows.append(("instances", f"{self.instance_count} x {self.instance_type}", ""))
        source = self.basis.get("step_time_source", "see assumptions")
        rows += [
            ("time per step", _duration(self.step_time_s), f"estimate: {source}"),
            ("wall time", _duration(self.wall_time_s), "estimate, see assumptions"),
        ]
        if self.surface != "local":
            rows += [
                ("instance hours", "-" if self.instance_hours is None else f"{self.instance_hours:,.2f}", ""),
                ("compute cost", money(self.compute_cost_usd), f"prices as of {self.prices_as_of}"),
                ("Lambda cost", money(self.lambda_cost_usd), f"prices as of {self.prices_as_of}"),
                ("total cost", money(self.cost_usd), "estimate"),
            ]
        return rows

    def table(self) -> str:
        """The rows as aligned plain text, for print()."""
        rows = self.rows()
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        lines = [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
        lines += [f"assumption: {a}" for a in self.assumptions]
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)

    def frame(self) -> Any:
        """The rows as a pandas DataFrame (for display in a notebook)."""
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=["quantity", "value", "how"]).set_index("quantity")


def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}"


def duration_unit(seconds: float) -> tuple[float, str, int]:
    """(seconds per unit, unit, decimals) a duration of this size reads best in."""
    if seconds < 10:
        return 1, "s", 2
    if seconds < 120:
        return 1, "s", 1
    if seconds < 7200:
        return 60, "min", 1
    return 3600, "h", 2


def _duration(seconds: float | None, unit: tuple[float, str, int] | None = None) -> str:
    """A duration in the unit its size calls for, or in `unit` (to set two durations side by side)."""
    if seconds is None:
        return "unknown"
    scale, name, digits = unit or duration_unit(seconds)
    return f"{seconds / scale:.{digits}f} {name}"


# ---------------------------------------------------------------------------------------------- prices


def load_prices(override: str | os.PathLike | dict | None = None) -> dict[str, Any]:
    """The bundled prices, with a user's file (or dict) merged over them key by key (nested dicts too)."""
    prices = json.loads(PRICES_FILE.read_text())
    if override is None or override == "":
        return prices
    if isinstance(override, dict):
        user = override
    else:
        shape = f"a prices file is a JSON object with the keys of {PRICES_FILE}"
        user = read_json_object(override, shape, shape)
    return _merge(prices, user)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def count_records(path: str | os.PathLike) -> int | None:
    """Non-blank lines of a local JSONL file (= records); None for s3:// or a file that is not there yet."""
    text = str(path)
    if not text or text.startswith("s3://"):
        return None
    p = Path(text)
    if not p.is_file():
        return None
    with p.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


# --------------------------------------------------------------------------------------------- compute


@dataclass
class Calibration:
    """Seconds measured by a short run of a job's own settings on this machine."""

    key: str
    steps: int  # optimizer steps run
    step_s: float  # median seconds per step after the first (validation excluded)
    startup_s: float  # process start to the end of the first step, less one typical step: imports, model, setup
    validation_s: float | None  # one validation pass (greedy, eval_prompts), when the job validates
    finish_s: float  # last step to process end: merged weights, output archive
    measured: str  # ISO time of the measurement
    machine: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def wall_s(self, total_steps: int, validations: int) -> float:
        """The wall time of a job of `total_steps` steps with `validations` validation passes."""
        return self.startup_s + total_steps * self.step_s + validations * (self.validation_s or 0.0) + self.finish_s

    def describe(self) -> str:
        val = f", {self.validation_s:.1f} s per validation" if self.validation_s is not None else ""
        return (f"measured on this machine ({self.machine.get('cpu', 'cpu')}, {self.settings.get('threads')} threads) "
                f"at {self.measured}: {self.step_s:.2f} s per step (median of the {max(1, self.steps - 2)} steps "
                f"after the second), {self.startup_s:.1f} s to start{val}, {self.finish_s:.1f} s to finish; a busier "
                "machine is slower")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute(spec: JobSpec, n_train: int, prices: str | os.PathLike | dict | None = None,
            reward_latency_s: float | None = None, prompt_tokens_mean: float | None = None,
            calibration: Calibration | None = None, calibration_note: str = "") -> Derived:
    """Every derived quantity of `spec` on its surface for a training set of `n_train` prompts.

    `reward_latency_s` (seconds per Lambda call, e.g. the p50 of 02's reward report) and
    `prompt_tokens_mean` sharpen the estimates; without them the prices file's assumptions are used. A local
    job's time comes from `calibration` (its own steps timed on this machine, see nbkit.train.calibration);
    without one, from the bundled figure, and `calibration_note` says why there is none.
    """
    if n_train < 0:
        raise UserError(f"n_train = {n_train}: the number of training prompts cannot be negative")
    table = load_prices(prices)
    assume = table.get("assumptions", {})
    spec = with_surface_defaults(spec)
    h, surface = spec.hyper, spec.surface
    notes: list[str] = []
    generations = effective(spec, "number_generation")
    ppstep = max(1, h.global_batch_size // generations)
    if generations != h.number_generation:
        notes.append(f"{SURFACE_TITLES[surface]} does not take number_generation: its recipe samples {generations} "
                     "completions per prompt")
    rollouts = h.global_batch_size
    per_epoch = max(1, math.ceil(n_train / ppstep))
    # Bedrock trains for epochCount epochs; it has no max_steps.
    steps = spec.steps(n_train)
    total = steps * rollouts
    fill = float(assume.get("mean_completion_fill", 1.0))
    comp_max = total * h.max_new_tokens
    comp_expected = round(comp_max * fill)
    notes.append(f"completions use {fill:g} of max_new_tokens on average")
    tokens_expected = None
    if prompt_tokens_mean is not None:
        tokens_expected = round(total * prompt_tokens_mean) + comp_expected
    d = Derived(
        surface=surface, n_train=n_train, prompts_per_step=ppstep, rollouts_per_step=rollouts,
        steps_per_epoch=per_epoch, total_steps=steps,
        epochs_effective=(steps * ppstep / n_train) if n_train else 0.0,
        total_rollouts=total, completion_tokens_max=comp_max, completion_tokens_expected=comp_expected,
        tokens_expected=tokens_expected, reward_calls=total, validation_reward_calls=0,
        lambda_concurrency=None, lambda_invocations=None, lambda_waves_per_step=None,
        instance_type=None, instance_count=None, step_time_s=None, wall_time_s=None, instance_hours=None,
        usd_per_instance_hour=None, compute_cost_usd=None, lambda_cost_usd=None, cost_usd=None,
        prices_as_of=str(table.get("as_of", "unknown")), assumptions=notes,
    )
    d.warnings = _data_warnings(spec, n_train, ppstep)
    rng = ranges(surface).get("max_steps")
    if h.max_steps is None and rng is not None and rng.exposed and not rng.contains(steps):
        d.warnings.append(f"{steps} steps derived from epochs is outside {SURFACE_TITLES[surface]}'s max_steps "
                          f"range {rng.describe()}: set max_steps or epochs")
    if surface == "local":
        _local_estimates(d, spec, assume, prompt_tokens_mean, calibration, calibration_note)
    else:
        latency = reward_latency_s if reward_latency_s is not None else float(assume.get("reward_latency_s", 0.5))
        if reward_latency_s is None:
            notes.append(f"reward Lambda takes {latency:g} s per call (no measured latency given)")
        d.basis = {"reward_latency_s": latency,
                   "reward_latency_source": "the reward report's median (02)" if reward_latency_s is not None
                   else "assumed (prices.json reward_latency_s)",
                   "prices_as_of": d.prices_as_of, "prices_reviewed": str(table.get("reviewed", "unknown"))}
        notes.append(f"prices as of {d.prices_as_of} ({PRICES_FILE.name}, last reviewed "
                     f"{d.basis['prices_reviewed']}; they may be stale): pass your own prices file to update them")
        _lambda_estimates(d, spec, assume, table.get("lambda", {}), latency)
        _managed_estimates(d, spec, assume, table, latency)
    return d


def _data_warnings(spec: JobSpec, n_train: int, ppstep: int) -> list[str]:
    """Data-size problems the user should see next to the numbers."""
    out = []
    if n_train and ppstep > n_train:
        out.append(f"a step needs {ppstep} prompts but the training set has {n_train}: prompts repeat within a step")
    if spec.surface == "bedrock":
        lo, hi = surface_default("bedrock", "min_prompts"), surface_default("bedrock", "max_prompts")
        if not lo <= n_train <= hi:
            out.append(f"Bedrock RFT takes {lo}..{hi} training prompts; this set has {n_train}")
    elif spec.surface != "local" and n_train < 100:
        out.append(f"{n_train} training prompts: AWS recommends starting with at least 100")
    return out


def local_validations(spec: JobSpec, total_steps: int) -> int:
    """Validation passes of a local job: at step 0, every eval_every steps and at the last step (the worker's
    schedule); none without eval data."""
    every, prompts = spec.local.eval_every, spec.local.eval_prompts
    if not (spec.eval_data and every and prompts):
        return 0
    return 1 + total_steps // every + (1 if total_steps % every else 0)


def _local_estimates(d: Derived, spec: JobSpec, assume: dict[str, Any], prompt_tokens: float | None,
                     calibration: Calibration | None, note: str) -> None:
    """Local runs: validation calls, and the time from this machine's calibration, else the bundled figure of
    the default tiny model (stated as such)."""
    loc = spec.local
    d.validations = local_validations(spec, d.total_steps)
    d.validation_reward_calls = d.validations * loc.eval_prompts
    d.instance_count = 1
    if calibration is not None:
        d.step_time_s = calibration.step_s
        d.wall_time_s = calibration.wall_s(d.total_steps, d.validations)
        d.basis = {"step_time_source": "calibration on this machine", "calibration": calibration.to_dict()}
        val = f" + {d.validations} validations x {calibration.validation_s:.1f} s" if calibration.validation_s else ""
        d.assumptions.append(
            f"local time {calibration.describe()}; wall time = {calibration.startup_s:.1f} s start + "
            f"{d.total_steps} steps x {calibration.step_s:.2f} s{val} + {calibration.finish_s:.1f} s finish")
        return
    if spec.model != "tiny":
        d.instance_count = None
        d.assumptions.append(f"no local time estimate: {note or 'not calibrated'}, and only the default tiny "
                             "model's throughput is bundled")
        return
    # Not scaled by threads: the tiny model trains no faster on 2 threads than on 1 (300 demo steps: 183 s on
    # 2, 115 s on 1), so the bundled figure stands for either.
    tps = float(assume["local_tiny_tokens_per_s"])
    ptoks = prompt_tokens if prompt_tokens is not None else float(assume["local_tiny_prompt_tokens"])
    d.step_time_s = d.rollouts_per_step * (ptoks + spec.hyper.max_new_tokens) / tps
    d.wall_time_s = d.step_time_s * d.total_steps
    d.basis = {"step_time_source": "bundled figure, not measured on this machine"}
    d.assumptions.append(
        f"local step time from the bundled {assume['local_tiny_tokens_per_s']:g} tokens/s of the tiny model "
        f"(1 or 2 threads), measured elsewhere (prompt {ptoks:g} + {spec.hyper.max_new_tokens} new tokens per rollout); "
        f"excludes validation, model loading and a busy machine; {note or 'not calibrated on this machine'}"
    )


def _lambda_estimates(d: Derived, spec: JobSpec, assume: dict[str, Any], lam: dict[str, Any],
                      latency: float) -> None:
    """Invocations (samples batched `lambda_batch_size` at a time), sequential waves per step at the concurrency
    limit, and the Lambda bill: requests plus GB-seconds of every sample scored."""
    batch = max(1, int(assume.get("lambda_batch_size", 1)))
    concurrency = spec.aws.lambda_concurrency_limit or surface_default(d.surface, "lambda_concurrency_limit")
    per_step = math.ceil(d.rollouts_per_step / batch)
    d.lambda_invocations = per_step * d.total_steps
    d.lambda_concurrency = concurrency
    if concurrency:
        d.lambda_waves_per_step = math.ceil(per_step / concurrency)
    d.lambda_samples_per_call = min(batch, d.rollouts_per_step)
    d.basis["lambda_batch_size"] = batch
    d.assumptions.append(f"up to {batch} samples per Lambda invocation (lambda_batch_size, the recipes' maximum; "
                         f"a smaller one means more invocations; the reward scores a batch one sample after "
                         f"another, {latency:g} s each)")
    memory = float(lam.get("memory_gb", 0.5))
    d.lambda_cost_usd = (
        d.lambda_invocations / 1e6 * float(lam.get("usd_per_million_requests", 0.0))
        + d.reward_calls * latency * memory * float(lam.get("usd_per_gb_second", 0.0))
    )
    d.assumptions.append(f"Lambda memory {memory:g} GB")


def _managed_estimates(d: Derived, spec: JobSpec, assume: dict[str, Any], table: dict[str, Any],
                       latency: float) -> None:
    """Wall time and compute cost of SageMaker surfaces; Bedrock gets a cost only with a price per hour."""
    if d.surface == "bedrock" or d.surface.startswith("serverless"):
        d.assumptions.append(
            f"{SURFACE_TITLES[d.surface]} manages the compute and does not say how many nodes it uses: no wall-time "
            "or compute-cost estimate (only the Lambda cost)"
        )
        return
    nodes = spec.aws.instance_count or surface_default(d.surface, "instance_count")
    itype = spec.aws.instance_type
    tps = float(assume["tokens_per_s_per_node"])
    fill = float(assume.get("mean_completion_fill", 1.0))
    gen_s = d.rollouts_per_step * fill * spec.hyper.max_new_tokens / (tps * nodes)
    reward_s = (d.lambda_waves_per_step or 1) * (d.lambda_samples_per_call or 1) * latency
    d.instance_type, d.instance_count = itype, nodes
    d.step_time_s = gen_s + reward_s
    d.wall_time_s = float(assume.get("startup_s", 0.0)) + d.step_time_s * d.total_steps
    d.instance_hours = d.wall_time_s / 3600 * nodes
    d.basis["step_time_source"] = (f"workbench assumption of {tps:g} completion tokens/s per node (prices.json "
                                   "tokens_per_s_per_node), not a measurement")
    d.assumptions.append(
        f"{tps:g} completion tokens/s per node end to end (workbench assumption; replace with your measured "
        f"figure), reward waves added to each step, {assume.get('startup_s', 0):g} s startup"
    )
    if d.surface.startswith("smhp"):
        d.assumptions.append("HyperPod bills the cluster, not the job: cost = this job's share of cluster time")
    price = (table.get("instance_usd_per_hour") or {}).get(itype)
    d.usd_per_instance_hour = price
    if price is None:
        d.assumptions.append(f"no price for {itype} in the prices file: compute cost unknown")
        return
    d.compute_cost_usd = d.instance_hours * float(price)
    d.cost_usd = d.compute_cost_usd + (d.lambda_cost_usd or 0.0)


def reward_latency(run_dir: str | os.PathLike) -> float | None:
    """Median seconds per reward call from 02's `reward/report.json`, when it recorded one."""
    from nbkit.layout import RunLayout

    layout = RunLayout(run_dir)
    if not layout.reward_report.is_file():
        return None  # no reward report yet: the estimate says it assumed a latency
    report = layout.read_reward_report()
    latency = report.get("latency") if isinstance(report, dict) else None
    if not isinstance(latency, dict):
        return None
    for key in ("p50_s", "median_s", "p50", "median"):
        value = latency.get(key)
        if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
            return float(value)
    return None
