"""Notebook 01's stage: bundled tasks, files with bad lines, separate eval files, tables; the run folder."""

from __future__ import annotations

import json

import pytest

from nbkit import params, paths, runner
from nbkit.data import load_split, prepare_data, prompt_key
from nbkit.data.explore import examples_frame, rejected_frame, run
from nbkit.errors import UserError


def make(i: int, **extra) -> dict:
    return {"id": f"r{i}", "messages": [{"role": "user", "content": f"What is {i} + 1?"}],
            "reference_answer": {"solution": str(i + 1)}, **extra}


def test_bundled_task_writes_the_run_folder(tmp_path):
    run = tmp_path / "run"
    stage = prepare_data("math", run_dir=str(run), n_train=120, n_eval=100, seed=1, max_prompt_tokens=64,
                         max_new_tokens=8)
    data = run / "data"
    assert load_split(run, "train") == stage.train and len(stage.train) == 120
    assert load_split(run, "eval") == stage.eval and len(stage.eval) == 100
    assert (data / "rejected.jsonl").read_text() == ""
    report = json.loads((data / "report.json").read_text())
    assert report["counts"] == {"input": 220, "valid": 220, "rejected": 0, "train": 120, "eval": 100}
    assert {f["code"] for f in report["profile"]["findings"]} >= {"no_leakage", "prompts_fit", "answers_fit"}
    assert stage.profile.worst == "info"
    assert "120 train and 100 eval" in stage.headline()
    assert list(examples_frame(stage.train, 3)["id"]) == [r["id"] for r in stage.train[:3]]


def test_file_with_bad_lines_is_split_and_every_line_accounted_for(tmp_path):
    src = tmp_path / "mine.jsonl"
    lines = [json.dumps(make(i, level="easy" if i % 4 else "hard")) for i in range(40)]
    lines[5] = "{broken"
    lines[9] = json.dumps({"id": "x", "messages": []})
    src.write_text("\n".join(lines) + "\n")
    stage = prepare_data(str(src), run_dir=str(tmp_path / "run"), eval_fraction=0.25, stratify_by="level", seed=0)
    assert stage.total == 40 and stage.rejected == 2
    assert len(stage.train) + len(stage.eval) == 38
    assert not {prompt_key(r) for r in stage.train} & {prompt_key(r) for r in stage.eval}
    rejected = rejected_frame(stage.files["rejected"])
    assert list(rejected["line"]) == [6, 10] and list(rejected["code"]) == ["invalid_json", "empty_messages"]
    assert stage.split["method"] == "seeded split by prompt"
    assert set(stage.validation_frame()["code"]) >= {"invalid_json", "empty_messages"}


def test_separate_eval_file_and_table_task(tmp_path):
    train = tmp_path / "qa.csv"
    train.write_text("question,answer\n" + "".join(f"What is {i} * 2?,{i * 2}\n" for i in range(30)))
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("\n".join(json.dumps(make(i)) for i in range(100, 110)) + "\nnot json\n")
    stage = prepare_data(str(train), eval_data=str(eval_file), run_dir=str(tmp_path / "run"))
    assert (len(stage.train), len(stage.eval)) == (30, 10)
    assert stage.train[0]["reference_answer"] == {"solution": 0}
    rows = [json.loads(x) for x in (tmp_path / "run" / "data" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["source"], r["line"]) for r in rows] == [(str(eval_file), 11)]


def test_unknown_task_and_files_without_valid_records(tmp_path):
    with pytest.raises(UserError, match="neither a bundled task"):
        prepare_data("nosuch.jsonl", run_dir=str(tmp_path / "run"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text("x\ny\n")
    with pytest.raises(UserError, match="rejected.jsonl"):
        prepare_data(str(bad), run_dir=str(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "data" / "report.json").read_text())["validation"]["source"]["rejected"] == 2
    with pytest.raises(UserError, match="eval_data"):
        prepare_data("math", eval_data=str(bad), run_dir=str(tmp_path / "run"))


def test_params_drive_the_stage(tmp_path):
    p = params.validate("01_explore_data", {"run_dir": str(tmp_path / "run"), "task": "tools", "n_train": "100",
                                            "n_eval": 100, "profile": "bedrock"})
    stage = run(p)
    assert stage.validation["train"].profile == "bedrock" and len(stage.train) == 100
    with pytest.raises(UserError, match="profile"):
        params.validate("01_explore_data", {"profile": "openai"})


def test_demo_and_smoke_sections_are_valid_and_learnable():
    for name in ("demo.yaml", "smoke.yaml"):
        section = params.load_file(paths.PARAMS / name)["01_explore_data"]
        p = params.validate("01_explore_data", section)
        assert p.task == "math" and p.n_train >= 100 and p.n_eval >= 1


@pytest.mark.slow
def test_notebook_01_runs_headless(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_RUNS", str(tmp_path))
    run = tmp_path / "smoke"
    jobs = runner.run_pipeline(paths.PARAMS / "smoke.yaml", run, only=["01"])
    assert [j.status for j in jobs] == ["ok"], jobs[0].error
    headline = json.loads((run / "01_explore_data" / "headline.json").read_text())["headline"]
    assert "train" in headline and "rejected" in headline
    assert len(load_split(run, "train")) == params.load_file(paths.PARAMS / "smoke.yaml")["01_explore_data"]["n_train"]
