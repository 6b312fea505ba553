"""Evaluate the tuned model exactly like the baseline: same prompts, same sampling settings, same reward.

The baseline's `summary.json` is the record of how it was measured; everything that could change a score is
read from it, so a difference between base and tuned can only come from the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit.errors import UserError
from nbkit.layout import RunLayout, setting

if TYPE_CHECKING:
    import pandas as pd

    from nbkit.evaluate.compare import Comparison
    from nbkit.params import EvaluateTunedParams
SETTING_KEYS = ("k", "max_new_tokens", "temperature", "seed")


@dataclass(frozen=True)
class BaselineSettings:
    """How the baseline was sampled and scored (read from baseline/summary.json)."""

    k: int
    max_new_tokens: int
    temperature: float
    seed: int
    reward: str
    model: str = ""
    pass_threshold: float | None = None
    failed_reward: float = 0.0
    generator: dict[str, Any] | None = None  # the base generator's description (batch size, top-k/p, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_settings(run_dir: str | Path) -> BaselineSettings:
    """The baseline's sampling settings, with an error naming the missing ones and how to get them."""
    layout = RunLayout(run_dir)
    path = layout.baseline_summary
    summary = layout.read_baseline_summary()
    missing = [k for k in (*SETTING_KEYS, "reward") if setting(summary, k) is None]
    if missing:
        raise UserError(f"{path} does not record {', '.join(missing)}; re-run notebook 03 with this version of nbkit")
    threshold = setting(summary, "pass_threshold")
    generator = setting(summary, "generator")
    return BaselineSettings(
        k=int(setting(summary, "k")),
        max_new_tokens=int(setting(summary, "max_new_tokens")),
        temperature=float(setting(summary, "temperature")),
        seed=int(setting(summary, "seed")),
        reward=str(setting(summary, "reward")),
        model=str(setting(summary, "model") or ""),
        pass_threshold=None if threshold is None else float(threshold),
        failed_reward=float(setting(summary, "failed_reward") or 0.0),
        generator=generator if isinstance(generator, dict) else None,
    )


def _arn_from_handle(handle: Any) -> str | None:
    """A Bedrock custom model ARN recorded by the job handle, if the backend records one."""
    for key, value in (handle.to_dict() or {}).items():
        if "model_arn" in key.lower().replace("modelarn", "model_arn") and isinstance(value, str) \
                and value.startswith("arn:"):
            return value
    return None


def resolve_tuned_model(run_dir: str | Path, override: str = "") -> tuple[str, str]:
    """(model spec for nbkit.policy.load_generator, where it came from).

    Without an override: the training job's manifest. A local checkpoint folder loads directly; a Bedrock custom
    model becomes `bedrock:<arn>`; a Nova S3 checkpoint cannot be sampled from here, so the error says how to
    evaluate it (a managed RFT evaluation job, then `replay:` its details parquet).
    """
    if override:
        return override, "the tuned_model parameter"
    from nbkit.train import load_job
    from nbkit.train.nova_layout import read_output

    handle = load_job(run_dir)
    state = handle.status()
    if state not in ("completed", "stopped"):
        done = handle.progress()
        at = f" at step {done[0]}/{done[1]}" if done and state != "planned" else ""
        hint = {
            "planned": "it was a dry run; set dry_run: false in 04_launch_training to train",
            "failed": "see why with nbkit.train.load_job(run_dir).logs(); run notebook 04 again to resume it",
        }.get(state, "wait for it to end (nbkit run --from 04 re-attaches and waits)")
        raise UserError(
            f"training job {handle.job_id} ({handle.backend}) is {state}{at}, not completed: {hint}; or set "
            "tuned_model to a checkpoint folder to evaluate an intermediate one"
        )
    arn = _arn_from_handle(handle)
    if arn:
        return f"bedrock:{arn}", f"the custom model of Bedrock job {handle.job_id}"
    folder = handle.outputs(RunLayout(run_dir).tuned_job_output)
    checkpoint = read_output(folder).checkpoint
    if not checkpoint:
        raise UserError(f"the manifest of job {handle.job_id} in {folder} names no checkpoint (checkpoint_s3_bucket)")
    if checkpoint.startswith("arn:"):
        return f"bedrock:{checkpoint}", f"the manifest of job {handle.job_id}"
    if checkpoint.startswith("s3://"):
        raise UserError(
            f"the tuned checkpoint of job {handle.job_id} is {checkpoint} (a Nova {handle.backend} job); it cannot be "
            "sampled from this machine. Run a Nova RFT evaluation job with run.model_name_or_path set to it (recipe "
            "evaluation/nova/nova_2_0/nova_lite/nova_lite_2_0_p5_48xl_gpu_rft_eval) on the same eval data and set "
            "tuned_model: replay:<its details_*.parquet>, or deploy it as a Bedrock custom model and set "
            "tuned_model: bedrock:<custom model ARN>"
        )
    return RunLayout(run_dir).resolve(checkpoint), f"the checkpoint in the manifest of job {handle.job_id}"


def baseline_samples(run_dir: str | Path) -> pd.DataFrame:
    """The baseline's samples frame (notebook 03's output)."""
    from nbkit.evaluate.compare import read_samples

    return read_samples(RunLayout(run_dir).baseline_samples)


def eval_records(run_dir: str | Path, base: pd.DataFrame) -> list[dict[str, Any]]:
    """The eval records the baseline scored, in the baseline's order; an error when some no longer exist."""
    from nbkit.data import load_split
    from nbkit.evaluate.sampling import prompt_ids

    records = load_split(run_dir, "eval")
    ids = prompt_ids(records)
    wanted = list(dict.fromkeys(base["prompt_id"].astype(str)))
    index = {str(pid): i for i, pid in enumerate(ids)}
    missing = [pid for pid in wanted if pid not in index]
    if missing:
        raise UserError(
            f"{len(missing)} prompt(s) the baseline scored are not in the eval split any more (e.g. {missing[:3]}): "
            "the data changed after notebook 03; re-run 03 so both models see the same prompts"
        )
    return [records[index[pid]] for pid in wanted]


def generator_options(model: str, settings: BaselineSettings, run_dir: str | Path, threads: int = 0) -> dict[str, Any]:
    """Keyword arguments that make the tuned generator sample like the base one.

    A local model gets the baseline's batch size and top-k/top-p: the local generator seeds per batch, so equal
    batches give base and tuned the same random draws (common random numbers), which tightens the paired
    comparison. The device is chosen afresh (`auto`), threads only change speed.
    """
    from nbkit.policy import ModelRef

    ref = ModelRef.parse(model)
    if ref.kind == "replay":
        return {"run_dir": run_dir}
    if ref.kind == "bedrock":
        return {}
    base = settings.generator or {}
    options: dict[str, Any] = {k: base[k] for k in ("batch_size", "top_k", "top_p") if base.get(k) is not None}
    if threads:
        options["threads"] = threads
    return options


def evaluate_tuned(run_dir: str | Path, model: str, reward: str = "", threads: int = 0) -> pd.DataFrame:
    """Sample and score the tuned model on the baseline's prompts with its settings; writes tuned/samples.parquet."""
    from nbkit.evaluate.sampling import sample_and_score, write_samples
    from nbkit.policy import load_generator
    from nbkit.rewards import load_reward

    settings = baseline_settings(run_dir)
    if reward and reward != settings.reward:
        raise UserError(
            f"reward {reward!r} differs from the baseline's {settings.reward!r}: scores would not be comparable; "
            "leave reward empty to use the baseline's, or re-run notebook 03 with the new reward"
        )
    records = eval_records(run_dir, baseline_samples(run_dir))
    generator = load_generator(model, **generator_options(model, settings, run_dir, threads))
    frame = sample_and_score(
        generator, load_reward(settings.reward), records, k=settings.k,
        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, seed=settings.seed,
    )
    write_samples(frame, RunLayout(run_dir).stage("tuned"))
    return frame


def compare_run(run_dir: str | Path, pass_threshold: float | None = None, n_boot: int = 2000, alpha: float = 0.05,
                seed: int = 0, allow_unmatched: bool = False, allow_mismatch: bool = False,
                provenance: dict[str, Any] | None = None):
    """Compare <run>/tuned against <run>/baseline and write <run>/tuned/comparison.json; refuses samples made
    from other eval data or with other sampling settings unless `allow_mismatch` (see compare)."""
    from nbkit.evaluate.compare import compare, read_samples

    layout = RunLayout(run_dir)
    settings = baseline_settings(run_dir)
    threshold = pass_threshold or settings.pass_threshold or 0.8  # 0/None: the baseline's, else the high bucket
    result = compare(baseline_samples(run_dir), read_samples(layout.tuned_samples), pass_threshold=threshold,
                     n_boot=n_boot, seed=seed, alpha=alpha, allow_unmatched=allow_unmatched,
                     failed_reward=settings.failed_reward, allow_mismatch=allow_mismatch)
    result.provenance = provenance or {}
    result.save(layout.comparison)
    return result


@dataclass
class TunedResult:
    """What notebook 06 found: which model was evaluated, how it was sampled, and the comparison."""

    model: str
    origin: str
    settings: BaselineSettings
    samples: pd.DataFrame
    comparison: Comparison

    def headline(self) -> str:
        return self.comparison.verdict

    def facts(self, run_dir: str | Path = "") -> dict[str, Any]:
        """What was evaluated, for a report: the model (inside the run folder when it is there), where it came
        from, and the baseline's sampling settings it was sampled with."""
        s = self.settings
        return {"tuned model": RunLayout(run_dir).relative(self.model), "from": self.origin, "reward": s.reward,
                "samples per prompt (k)": s.k, "max_new_tokens": s.max_new_tokens, "temperature": s.temperature,
                "seed": s.seed, "pass threshold": s.pass_threshold,
                "batch size": (s.generator or {}).get("batch_size")}

    def to_html(self, max_regressions: int = 10) -> str:
        """The run index's detail under the verdict (the index shows the verdict itself once, as the
        headline): the headline metrics, the breakdowns and the worst regressions, as report tables."""
        from nbkit.display import table

        c = self.comparison
        parts = [table(c.summary_frame(), title="Headline metrics")]
        parts += [table(frame, title=f"By {column}") for column, frame in c.breakdown.items()]
        columns = ("prompt_id", "prompt", "base_mean", "tuned_mean", "diff")
        parts.append(table(c.regressions, title="Regressions, worst first", columns=columns, rows=max_regressions,
                           empty="none: no prompt got worse"))
        return "\n".join(p.to_html() for p in parts)


def run(P: EvaluateTunedParams) -> TunedResult:
    """Notebook 06 end to end: the tuned model on the baseline's prompts with the baseline's settings, then the
    paired comparison (tuned/samples.parquet, tuned/comparison.json)."""
    from nbkit.provenance import collect

    settings = baseline_settings(P.run_dir)
    model, origin = resolve_tuned_model(P.run_dir, P.tuned_model)
    samples = evaluate_tuned(P.run_dir, model, reward=P.reward, threads=P.threads)
    comparison = compare_run(P.run_dir, pass_threshold=P.pass_threshold, n_boot=P.n_boot, alpha=P.alpha,
                             seed=P.seed, allow_unmatched=P.allow_unmatched, allow_mismatch=P.allow_mismatch,
                             provenance=collect(P))
    return TunedResult(model, origin, settings, samples, comparison)
