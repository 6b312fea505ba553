"""Notebook 06's plumbing: the baseline's settings, finding the tuned checkpoint, comparing a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_evaluate_compare import BASE, TUNED, frame  # tests/ is on sys.path (pytest rootdir import mode)

from nbkit.errors import UserError
from nbkit.evaluate import tuned
from nbkit.train.job import JobHandle
from nbkit.train.nova_layout import extract_output, write_output

SUMMARY = {"settings": {"k": 4, "max_new_tokens": 16, "temperature": 0.7, "seed": 3, "reward": "builtin:numeric",
                        "model": "tiny", "pass_threshold": 0.5}}


def write_summary(run: Path, summary: dict) -> None:
    (run / "baseline").mkdir(parents=True, exist_ok=True)
    (run / "baseline" / "summary.json").write_text(json.dumps(summary))


def test_baseline_settings_read_nested_or_top_level(runs_root):
    run = runs_root / "r"
    write_summary(run, SUMMARY)
    s = tuned.baseline_settings(run)
    assert (s.k, s.max_new_tokens, s.temperature, s.seed, s.reward, s.pass_threshold) == (
        4, 16, 0.7, 3, "builtin:numeric", 0.5)
    write_summary(run, SUMMARY["settings"] | {"pass_threshold": None})
    assert tuned.baseline_settings(run).pass_threshold is None


def test_baseline_settings_errors_say_what_to_run(runs_root):
    run = runs_root / "r"
    with pytest.raises(UserError, match="run notebook 03_evaluate_baseline"):
        tuned.baseline_settings(run)
    write_summary(run, {"settings": {"k": 4}})
    with pytest.raises(UserError, match="does not record max_new_tokens, temperature, seed, reward"):
        tuned.baseline_settings(run)


class FakeJob(JobHandle):
    """A finished job of another backend: only what resolve_tuned_model asks of a handle."""

    backend = "sagemaker"

    def __init__(self, run_dir, state: str, checkpoint: str, extra: dict | None = None):
        super().__init__("job-1", run_dir)
        self.state, self.checkpoint, self.extra = state, checkpoint, extra or {}

    def status(self) -> str:
        return self.state

    def stop(self) -> None:
        """Nothing to stop."""

    def logs(self, tail=None) -> str:
        return ""

    def outputs(self, dest=None) -> Path:
        archive = write_output(Path(self.run_dir) / "remote", self.checkpoint, [])  # what the job uploaded
        return extract_output(archive, dest)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "job_id": self.job_id} | self.extra


def test_resolve_tuned_model_paths(runs_root, monkeypatch, tmp_path):
    run = runs_root / "r"
    assert tuned.resolve_tuned_model(run, "replay:/x.parquet") == ("replay:/x.parquet", "the tuned_model parameter")
    jobs = {}
    monkeypatch.setattr("nbkit.train.load_job", lambda run_dir: jobs["job"])

    jobs["job"] = FakeJob(run, "completed", str(tmp_path / "ckpt"))
    model, origin = tuned.resolve_tuned_model(run)
    assert model == str(tmp_path / "ckpt") and "manifest of job job-1" in origin
    assert (run / "tuned" / "job_output" / "manifest.json").is_file()

    jobs["job"] = FakeJob(run, "completed", "s3://bucket/job-1/checkpoints")
    with pytest.raises(UserError, match="s3://bucket/job-1/checkpoints.*model_name_or_path.*replay:"):
        tuned.resolve_tuned_model(run)

    arn = "arn:aws:bedrock:us-east-1:123456789012:custom-model/x"
    jobs["job"] = FakeJob(run, "completed", "", extra={"outputModelArn": arn})
    assert tuned.resolve_tuned_model(run)[0] == f"bedrock:{arn}"

    jobs["job"] = FakeJob(run, "running", "")
    with pytest.raises(UserError, match="is running, not completed"):
        tuned.resolve_tuned_model(run)


def test_dry_run_job_has_no_model(runs_root):
    run = runs_root / "r"
    (run / "training").mkdir(parents=True)
    (run / "training" / "job.json").write_text(json.dumps({
        "backend": "local", "handle": {"backend": "local", "job_id": "dry-run-x", "dry_run": True, "name": "x"}}))
    with pytest.raises(UserError, match="is planned, not completed"):
        tuned.resolve_tuned_model(run)


def test_compare_run_writes_comparison_json_with_the_baselines_threshold(runs_root):
    run = runs_root / "r"
    write_summary(run, SUMMARY)
    frame(BASE).to_parquet(run / "baseline" / "samples.parquet")
    (run / "tuned").mkdir()
    frame(TUNED).to_parquet(run / "tuned" / "samples.parquet")
    result = tuned.compare_run(run, n_boot=100)
    assert result.pass_threshold == 0.5
    saved = json.loads((run / "tuned" / "comparison.json").read_text())
    assert saved["verdict"] == result.verdict and saved["pass_threshold"] == 0.5
    assert tuned.compare_run(run, pass_threshold=0.9, n_boot=100).pass_threshold == 0.9


def _replay(path: Path, records: list[dict], answers: dict[str, list[str]]) -> str:
    with path.open("w") as fh:
        for r in records:
            for s, text in enumerate(answers[r["id"]]):
                fh.write(json.dumps({"prompt": r["messages"][-1]["content"], "sample": s, "response": text}) + "\n")
    return f"replay:{path}"


def test_evaluate_tuned_end_to_end_with_replayed_outputs(runs_root, tmp_path):
    """Baseline and tuned answers replayed from files: the real sampling, reward and comparison code paths."""
    from nbkit.evaluate.sampling import sample_and_score, write_samples
    from nbkit.policy import load_generator

    run = runs_root / "r"
    records = [{"id": f"q{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}],
                "reference_answer": {"answer": 2 * i}, "domain": "arithmetic" if i % 2 else "doubling"}
               for i in range(1, 7)]
    (run / "data").mkdir(parents=True)
    (run / "data" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    base_answers = {f"q{i}": ["The answer is 0", f"The answer is {2 * i}"] for i in range(1, 7)}
    tuned_answers = {f"q{i}": [f"The answer is {2 * i}", f"The answer is {2 * i}"] for i in range(1, 6)}
    tuned_answers["q6"] = ["The answer is 1", "The answer is 1"]  # one regression
    base_model = _replay(tmp_path / "base.jsonl", records, base_answers)
    base = sample_and_score(load_generator(base_model), "builtin:numeric", records, k=2, max_new_tokens=8,
                            temperature=1.0, seed=0)
    write_samples(base, run / "baseline")
    write_summary(run, {"settings": {"k": 2, "max_new_tokens": 8, "temperature": 1.0, "seed": 0,
                                     "reward": "builtin:numeric", "pass_threshold": 0.8, "failed_reward": 0.0}})

    with pytest.raises(UserError, match="differs from the baseline's"):
        tuned.evaluate_tuned(run, "replay:x.jsonl", reward="builtin:exact")
    frame_t = tuned.evaluate_tuned(run, _replay(tmp_path / "tuned.jsonl", records, tuned_answers))
    assert (run / "tuned" / "samples.parquet").is_file()
    assert frame_t["prompt_id"].tolist() == base["prompt_id"].tolist()
    result = tuned.compare_run(run, n_boot=200)
    # per prompt: base 0.5 everywhere; tuned 1.0 on q1..q5 and 0.0 on q6
    assert result.reward_diff.estimate == pytest.approx((5 * 0.5 - 0.5) / 6)
    assert [result.win_tie_loss[k] for k in ("wins", "ties", "losses")] == [5, 0, 1]
    assert result.regressions["prompt_id"].tolist() == ["q6"]
    assert set(result.breakdown["domain"]["domain"]) == {"arithmetic", "doubling"}

    # tuned samples made with other sampling settings are refused, unless allowed (and then stated)
    other = frame_t.copy()
    other.attrs["sampling"] = dict(frame_t.attrs["sampling"], max_new_tokens=32)
    other.to_parquet(run / "tuned" / "samples.parquet", index=False)
    with pytest.raises(UserError, match=r"max_new_tokens 8 \(base\) vs 32 \(tuned\)"):
        tuned.compare_run(run, n_boot=100)
    allowed = tuned.compare_run(run, n_boot=100, allow_mismatch=True, provenance={"seed": 0})
    saved = json.loads((run / "tuned" / "comparison.json").read_text())
    assert saved["mismatches"] == allowed.mismatches and saved["provenance"] == {"seed": 0}
    assert "Compared although max_new_tokens 8 (base) vs 32 (tuned)" in saved["verdict"]


def test_eval_records_refuse_prompts_that_left_the_split(runs_root):
    run = runs_root / "r"
    (run / "data").mkdir(parents=True)
    (run / "data" / "eval.jsonl").write_text(json.dumps(
        {"id": "q1", "messages": [{"role": "user", "content": "1+1?"}], "reference_answer": {"answer": 2}}) + "\n")
    base = frame({"q1": [1.0], "q9": [0.0]})
    with pytest.raises(UserError, match="1 prompt\\(s\\) the baseline scored are not in the eval split.*q9"):
        tuned.eval_records(run, base)
    assert [r["id"] for r in tuned.eval_records(run, frame({"q1": [1.0]}))] == ["q1"]
