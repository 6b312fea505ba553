"""nbkit.sweep: grid expansion, content keys, the comparison statistics, and a 2-point smoke sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbkit import cli, params, paths
from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.sweep import combine, compare, execute, from_file, parse_grid
from nbkit.sweep.grid import Point, SweepSpec

# ------------------------------------------------------------------------------------------------ grid


def test_grid_expands_in_order_with_extra_points_and_seeds():
    spec = SweepSpec({"04_launch_training.learning_rate": [1e-3, 3e-3], "04_launch_training.lora_rank": [8, 16]},
                     points=[{"04_launch_training.learning_rate": 5e-4}], seeds=2)
    points = spec.expand()
    assert len(points) == (4 + 1) * 2
    assert points[0].settings == {"04_launch_training.learning_rate": 1e-3, "04_launch_training.lora_rank": 8,
                                  "04_launch_training.seed": 0}
    assert points[1].seed == 1 and points[1].config == points[0].config
    assert points[-1].settings == {"04_launch_training.learning_rate": 5e-4, "04_launch_training.seed": 1}
    assert points[0].name == "learning_rate-0.001_lora_rank-8_seed-0"
    assert points[0].overrides() == ["04_launch_training.learning_rate=0.001", "04_launch_training.lora_rank=8",
                                     "04_launch_training.seed=0"]
    assert len(SweepSpec({"a.b": [1, 1]}).expand()) == 1  # a duplicate point runs once
    with pytest.raises(UserError, match="the sweep has no points"):
        SweepSpec().expand()


def test_grid_options_the_params_file_block_and_their_errors(tmp_path):
    assert parse_grid(["04_launch_training.learning_rate=0.001,3.0e-3", "03_evaluate_baseline.k=4,8"]) == {
        "04_launch_training.learning_rate": [0.001, 0.003], "03_evaluate_baseline.k": [4, 8]}
    for bad, message in (("learning_rate=1", "is not SECTION.NAME=V1,V2"), ("a.b=", "is not SECTION.NAME")):
        with pytest.raises(UserError, match=message):
            parse_grid([bad])
    with pytest.raises(UserError, match="names a.b twice"):
        parse_grid(["a.b=1", "a.b=2"])
    path = tmp_path / "p.yaml"
    path.write_text("sweep:\n  grid:\n    04_launch_training.max_steps: [5, 10]\n  seeds: 2\n"
                    "01_explore_data: {}\n")
    spec = from_file(path)
    assert spec.grid == {"04_launch_training.max_steps": [5, 10]} and spec.seeds == 2
    assert list(params.load_file(path)) == ["01_explore_data"], "the sweep block is not a parameter"
    both = combine(spec, {"04_launch_training.max_steps": [20]}, None, 3)
    assert both.grid == {"04_launch_training.max_steps": [20]} and both.seeds == 2 and both.jobs == 3
    path.write_text("sweep:\n  grdi: {}\n")
    with pytest.raises(UserError, match="unknown sweep key"):
        from_file(path)


def test_content_keys_follow_parameters_inputs_and_upstream(tmp_path):
    reward = tmp_path / "reward.py"
    reward.write_text("def lambda_handler(event, context):\n    return []\n")
    path = tmp_path / "p.yaml"
    path.write_text(f"01_explore_data: {{}}\n02_prototype_reward: {{reward: {reward}}}\n04_launch_training: {{}}\n")
    base = execute.stage_keys(path, [])
    assert base == execute.stage_keys(path, [])
    lr = execute.stage_keys(path, ["04_launch_training.learning_rate=0.003"])
    assert lr["01_explore_data"] == base["01_explore_data"] and lr["04_launch_training"] != base["04_launch_training"]
    n = execute.stage_keys(path, ["01_explore_data.n_train=300"])
    assert all(n[k] != base[k] for k in base), "a changed upstream stage changes every key after it"
    reward.write_text("def lambda_handler(event, context):\n    return [1]\n")
    edited = execute.stage_keys(path, [])
    assert edited["01_explore_data"] == base["01_explore_data"] and edited["02_prototype_reward"] != base[
        "02_prototype_reward"], "the reward file's content is an input of 02"


def test_a_point_is_done_only_with_ok_statuses_and_the_same_keys(tmp_path):
    run = tmp_path / "run"
    for i, name in enumerate(("01_explore_data", "02_prototype_reward")):
        (run / name).mkdir(parents=True)
        (run / name / "status.json").write_text(json.dumps({"notebook": name, "status": "ok", "started_ts": 2.0 * i,
                                                            "ended_ts": 2.0 * i + 1}))
    keys = {"01_explore_data": "a", "02_prototype_reward": "b", "03_evaluate_baseline": "c"}
    (run / execute.KEYS_FILE).write_text(json.dumps({"01_explore_data": "a", "02_prototype_reward": "x"}))
    assert execute.done_notebooks(run, keys) == ["01_explore_data"]
    execute._record(run, keys)
    assert execute.done_notebooks(run, keys) == ["01_explore_data", "02_prototype_reward"]


def test_a_run_read_by_its_own_compare_notebook_is_complete(tmp_path):
    """08 reads its own run while it runs: its `running` status is not the run's (once: "0 complete")."""
    run = tmp_path / "run"
    for name, state in (("06_evaluate_tuned", "ok"), ("08_compare_runs", "running"), ("07_review_outputs", "ok")):
        (run / name).mkdir(parents=True)
        (run / name / "status.json").write_text(json.dumps({"notebook": name, "status": state}))
    assert compare.read_run(run).status == "ok"
    (run / "07_review_outputs" / "status.json").write_text(json.dumps({"notebook": "07_review_outputs",
                                                                       "status": "failed"}))
    assert compare.read_run(run).status == "failed at 07"


# ---------------------------------------------------------------------------------------- statistics


def _fake_run(root: Path, name: str, per_prompt: list[float], base: list[float]) -> compare.RunRecord:
    """A run folder holding only what the comparison reads: tuned samples and comparison.json."""
    layout = RunLayout(root / name)
    layout.stage("tuned")
    rows = [{"prompt_id": f"p{i}", "sample": s, "reward": v} for i, v in enumerate(per_prompt) for s in range(2)]
    pd.DataFrame(rows).to_parquet(layout.tuned_samples)
    diff = float(np.mean(per_prompt) - np.mean(base))
    layout.comparison.write_text(json.dumps({"reward": {
        "base": {"estimate": float(np.mean(base))}, "tuned": {"estimate": float(np.mean(per_prompt))},
        "diff": {"estimate": diff, "lo": diff - 0.1, "hi": diff + 0.1}, "p_value": 0.5},
        "pass_rate": {"base": {"estimate": 0.1}, "tuned": {"estimate": 0.2}}}))
    lr = name.split("-")[1]
    return compare.read_run(layout.root, name, {"04_launch_training.learning_rate": lr},
                            int(name.split("-")[-1]) if "seed" in name else None)


def test_the_best_configuration_is_tested_against_each_other_by_hand(tmp_path):
    base = [0.0] * 6
    runs = [_fake_run(tmp_path, "lr-a", [1, 1, 1, 1, 1, 0], base),     # mean 5/6
            _fake_run(tmp_path, "lr-b", [1, 0, 0, 0, 0, 0], base),     # mean 1/6: best - b = 4 prompts of +1
            _fake_run(tmp_path, "lr-c", [1, 1, 1, 1, 0, 0], base)]     # mean 4/6: best - c = 1 prompt of +1
    result = compare.compare_runs(runs, n_boot=500)
    assert result.best == "learning_rate=a"
    by_other = {c.other: c for c in result.contests}
    b, c = by_other["learning_rate=b"], by_other["learning_rate=c"]
    assert b.diff == pytest.approx(4 / 6) and c.diff == pytest.approx(1 / 6)
    # exact sign-flip test: 4 non-zero differences all +1 -> only the 2 all-same-sign labellings are as extreme
    assert b.p_value == pytest.approx(2 / 16) and c.p_value == pytest.approx(1.0)
    assert b.p_holm == pytest.approx(min(1.0, 2 * 2 / 16)) and c.p_holm == pytest.approx(1.0)
    verdict = result.verdict()
    assert "Not distinguishable from learning_rate=c (+0.167" in verdict and "learning_rate=b (+0.667" in verdict
    assert "Holm p = 0.25" in verdict and "2 comparisons" in verdict


def test_seeds_of_one_configuration_give_mean_and_spread(tmp_path):
    base = [0.0] * 4
    runs = [_fake_run(tmp_path, "lr-a-seed-0", [1, 1, 0, 0], base), _fake_run(tmp_path, "lr-a-seed-1", [1, 1, 1, 1], base),
            _fake_run(tmp_path, "lr-b-seed-0", [0, 0, 0, 0], base)]
    result = compare.compare_runs(runs, n_boot=200)
    a = next(c for c in result.configs if c["config"] == "learning_rate=a")
    assert a["seeds"] == 2 and a["tuned_mean"] == pytest.approx(0.75)
    assert a["tuned_sd"] == pytest.approx(np.std([0.5, 1.0], ddof=1))
    assert result.best == "learning_rate=a"
    contest = result.contests[0]
    assert contest.diff == pytest.approx(0.75)  # seed-averaged prompts (1, 1, .5, .5) against (0, 0, 0, 0)


# ----------------------------------------------------------------------------------- the smoke sweep


@pytest.mark.slow
def test_a_two_point_sweep_runs_shared_stages_once_then_nothing_then_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_RUNS", str(tmp_path))
    base = (paths.PARAMS / "smoke.yaml").read_text().split("07_review_outputs:")[0]  # 01-06 keep CI quick
    params_file = tmp_path / "sweep.yaml"
    params_file.write_text(base.replace("max_steps: 10", "max_steps: 4"))
    out = tmp_path / "sweep"
    argv = ["sweep", "--params", str(params_file), "--out", str(out), "--n-boot", "200"]
    assert cli.main(argv) == 0
    record = json.loads((out / "sweep.json").read_text())
    assert [r["settings"] for r in record["runs"]] == [{"04_launch_training.learning_rate": 0.001},
                                                      {"04_launch_training.learning_rate": 0.003}]
    assert len(list((out / "shared").iterdir())) == 1, "01-03 ran once, for both points"
    for entry in record["runs"]:
        assert entry["status"] == "ok" and entry["executed"][0] == "04_launch_training"
        assert entry["metrics"]["steps"] == 4 and entry["metrics"]["diff"] is not None
        folder = out / entry["run_folder"]
        assert json.loads((folder / "01_explore_data" / "status.json").read_text())["status"] == "ok"
        assert (folder / "data" / "train.jsonl").is_file() and (folder / "model" / "config.json").is_file()
    page = (out / "index.html").read_text()
    assert "learning_rate-0.003" in page and "Holm" in page and "data:image/png;base64," in page
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name(f"sweep-{out.name}").experiment_id])
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId")]
    assert len(found) == 3 and len(children) == 2
    assert {c.data.params["04_launch_training.learning_rate"] for c in children} == {"0.001", "0.003"}

    assert cli.main(argv) == 0  # the same command again: nothing to execute
    again = json.loads((out / "sweep.json").read_text())
    assert all(r["executed"] == [] for r in again["runs"])

    status = out / again["runs"][1]["run_folder"] / "06_evaluate_tuned" / "status.json"
    status.write_text(json.dumps(json.loads(status.read_text()) | {"status": "failed"}))  # as after a crash
    assert cli.main(argv) == 0
    resumed = json.loads((out / "sweep.json").read_text())
    assert resumed["runs"][0]["executed"] == [] and resumed["runs"][1]["executed"] == ["06_evaluate_tuned"]


def test_runs_lists_runs_and_sweeps_newest_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NBKIT_RUNS", str(tmp_path))
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "sweep.json").write_text(json.dumps({"params_file": "p.yaml", "verdict": "Best: x",
                                                           "runs": [{"status": "ok"}, {"status": "failed at 04"}]}))
    run = tmp_path / "r1" / "01_explore_data"
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"notebook": "01_explore_data", "status": "ok"}))
    os.utime(tmp_path / "s1" / "sweep.json", (1_700_000_000, 1_700_000_000))  # the sweep is older
    assert cli.main(["runs", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == ["r1", "s1"] and entries[1]["status"] == "1/2 ok"
    assert "s1/index.html" in (tmp_path / "index.html").read_text()


def test_a_point_name_is_a_valid_folder_name():
    point = Point((("04_launch_training.local", {"threads": 1}),), 3)
    assert "/" not in point.name and " " not in point.name and point.name.endswith("seed-3")


def test_the_page_table_reads_like_the_reports_and_sorts_by_value(tmp_path):
    """Numbers as the reports show them (right-aligned, sorted by the value behind them), the wide table in a
    box that scrolls instead of widening the page (it once ran off a 1280 px window)."""
    from nbkit.sweep import page

    base = [0.0] * 4
    runs = [_fake_run(tmp_path, "lr-a", [1, 1, 0, 0], base), _fake_run(tmp_path, "lr-b", [1, 0, 0, 0], base)]
    html_text = page.page(compare.compare_runs(runs, n_boot=100), "t", {"lr-a": "runs/lr-a/index.html"})
    assert '<div class="nbkit-box"><table class="sortable nbkit-table">' in html_text
    assert ".nbkit-box{max-width:100%;overflow-x:auto" in html_text  # the reports' stylesheet is on the page
    assert '<td class="num" data-v="0.5">0.5</td>' in html_text  # tuned mean reward of lr-a
    assert '<a href="runs/lr-a/index.html">lr-a</a>' in html_text
