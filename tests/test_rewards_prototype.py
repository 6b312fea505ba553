"""Notebook 02's library side: report.json and lambda.zip in the run folder, and a headline that tells the truth."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from nbkit import params
from nbkit.data import write_jsonl
from nbkit.data.samples import make_task
from nbkit.rewards import graders as G
from nbkit.rewards import prototype

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"


@pytest.fixture(scope="module")
def records():
    return make_task("math", 8, 2, seed=0)[0]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))


def test_the_stage_entry_writes_report_and_zip(runs_root, records):
    run = runs_root / "demo"
    write_jsonl(run / "data" / "train.jsonl", records)
    p = params.validate("02_prototype_reward", {"run_dir": str(run), "num_samples": 5, "workers": 1})
    proto = prototype.run(p, progress=False)
    report = json.loads((run / "reward" / "report.json").read_text())
    assert report["records"] == 5 and report["reward"]["name"] == "builtin:numeric"
    assert report["contract"]["summary"]["ok"] == report["contract"]["summary"]["total"] == len(proto.probes.cases)
    assert report["contract"]["determinism"]["deterministic"] is True
    assert report["probes"]["gameable"] == [] and report["probes"]["discrimination"]["auc"] == 1.0
    assert report["package"]["handler"] == "nbkit_reward.lambda_handler"
    assert zipfile.ZipFile(run / "reward" / "lambda.zip").namelist() == ["nbkit/__init__.py", "nbkit/plain.py",
                                                                       "nbkit_reward.py"]
    assert "no bad probe scores high" in report["headline"]
    assert list(proto.contract_table()["status"])[0] == "ok"
    assert list(proto.latency_table().index) == ["call", "sample"]
    assert proto.overview().loc["gameable by", "value"] == "nothing"


def test_a_gameable_reward_is_called_out(tmp_path, records):
    proto = prototype.prototype_reward(str(FIXTURES / "substring.py"), records, out_dir=tmp_path, workers=0)
    assert "GAMEABLE by" in proto.headline() and "many_candidates" in proto.headline()
    examples = proto.flagged_examples()
    assert set(examples["probe"]) >= {"buried_answer", "hedged"} and (examples["score"] == 1.0).all()
    assert json.loads((tmp_path / "report.json").read_text())["probes"]["gameable"] == proto.probes.gameable
    assert proto.package["files"] == ["substring.py"]


def test_a_reward_that_cannot_be_packaged_still_gets_its_report(tmp_path, records):
    class Gen:
        def generate(self, prompts, n, max_new_tokens, temperature, seed):
            return [[type("C", (), {"text": "Score: 0"})()] for _ in prompts]

    proto = prototype.prototype_reward(G.LLMJudge(Gen()), records[:2], out_dir=tmp_path, workers=0)
    assert "LLM judge" in proto.package["skipped"]
    assert not (tmp_path / "lambda.zip").exists() and (tmp_path / "report.json").exists()
    assert "fails to credit" in proto.headline()


def test_a_reward_failing_on_every_call_leads_the_headline_with_its_cause(tmp_path, records):
    strings = [{**r, "reference_answer": r["reference_answer"]["solution"]} for r in records[:3]]
    proto = prototype.prototype_reward(str(FIXTURES / "object_reference.py"), strings, out_dir=tmp_path, workers=0,
                                       package=False)
    n = len(proto.probes.cases)
    assert proto.headline().startswith(f"object_reference: {n} of {n} probe responses failed: AttributeError")
    assert "fails to credit" not in proto.headline() and "no bad probe" not in proto.headline()
    assert proto.overview().loc["failures", "value"].startswith(f"{n} of {n} probe responses failed")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["probes"]["failure"]["error"] == "AttributeError: 'str' object has no attribute 'get'"
    assert report["probes"]["verdict"].startswith(f"{n} of {n} probe responses failed")
