"""Plans, job handles, training/job.json, the backend registry and `nbkit train` (plan paths only)."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from nbkit import cli
from nbkit.errors import UserError
from nbkit.train import job
from nbkit.train.spec import JobSpec


def _local_spec(tmp_path: Path, **fields: Any) -> JobSpec:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i}+1?"}],
                                         "reference_answer": str(i + 1)}) + "\n" for i in range(40)))
    return JobSpec.local_preset(**{"name": "t1", "train_data": str(train), "reward": "builtin:numeric", **fields})


# ------------------------------------------------------------------------------------- a test backend


class _ScriptedHandle(job.JobHandle):
    """A handle whose statuses follow a script: exercises JobHandle.wait and load_job's dispatch."""

    backend = "local"

    def __init__(self, job_id: str, run_dir: Any, script: list[str], total: int = 4) -> None:
        super().__init__(job_id, run_dir)
        self.script, self.total, self.polls, self.stopped = list(script), total, 0, False

    def status(self) -> str:
        state = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        return state

    def progress(self) -> tuple[int, int]:
        return min(self.polls, self.total), self.total

    def stop(self) -> None:
        self.stopped = True

    def logs(self, tail: int | None = None) -> str:
        return "log line"

    def outputs(self, dest: Any = None) -> Path:
        return self.run_dir / "training" / "output"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "script": self.script}


@pytest.fixture
def scripted_backend(monkeypatch):
    """Route backend "local" to an in-test module whose submit returns a scripted handle."""
    module = types.ModuleType("scripted_backend")
    module.script = ["running"]

    def plan(spec: JobSpec) -> job.Plan:
        return job.Plan(backend="local", spec=spec, request={"steps": spec.hyper.max_steps})

    def submit(plan: job.Plan, run_dir: Path) -> job.JobHandle:
        return _ScriptedHandle("job-1", run_dir, module.script)

    def handle_from_dict(data: dict, run_dir: Path) -> job.JobHandle:
        return _ScriptedHandle(data["job_id"], run_dir, data["script"])

    module.plan, module.submit, module.handle_from_dict = plan, submit, handle_from_dict
    monkeypatch.setitem(sys.modules, "scripted_backend", module)
    monkeypatch.setitem(job.BACKEND_MODULES, "local", "scripted_backend")
    return module


# ------------------------------------------------------------------------------------------------ plans


def test_plan_describe_and_to_dict(tmp_path):
    spec = _local_spec(tmp_path)
    plan = job.Plan(backend="local", spec=spec, request={"grpo": {"lr": 1e-3}, "path": tmp_path}, warnings=["w1"])
    text = plan.describe()
    assert "DRY RUN" in text and "warning: w1" in text and "lr: 0.001" in text and str(tmp_path) in text
    data = plan.to_dict()
    assert data["spec"]["hyper"]["learning_rate"] == 1e-3 and data["backend"] == "local"
    json.dumps(data)  # plain JSON types only


# ----------------------------------------------------------------------------------- launch (dry run)


def test_dry_run_launch_records_job_json_and_reloads(tmp_path, runs_root):
    run = runs_root / "r1"
    handle = job.launch(_local_spec(tmp_path), run)
    assert isinstance(handle, job.DryRunHandle) and handle.status() == "planned"
    assert handle.wait(timeout=1) == "planned"
    record = json.loads((run / "training" / "job.json").read_text())
    assert record["backend"] == "local" and record["dry_run"] is True and record["surface"] == "local"
    assert record["spec"]["output"] == "training"  # defaults into the run, stored relative to it
    assert job.load_spec(run).output == str(run / "training")  # and read back where the run folder is now
    assert record["plan"]["request"]["steps"]["max_steps"] == 200
    assert record["derived"]["n_train"] == 40 and record["derived"]["total_steps"] == 200
    again = job.load_job(run)
    assert isinstance(again, job.DryRunHandle) and again.job_id == handle.job_id
    assert "local plan for job 't1'" in again.logs()
    with pytest.raises(UserError, match="dry run"):
        again.outputs()
    assert job.load_spec(run).hyper.learning_rate == 1e-3
    assert job.load_job(run / "training" / "job.json").job_id == handle.job_id


def test_launch_refuses_an_invalid_spec_before_planning(tmp_path, runs_root):
    spec = _local_spec(tmp_path, hyper={"global_batch_size": 60})
    with pytest.raises(UserError, match="multiple of number_generation"):
        job.launch(spec, runs_root / "r")
    assert not (runs_root / "r" / "training" / "job.json").exists()


def test_relaunch_archives_the_previous_record(tmp_path, runs_root):
    run = runs_root / "r2"
    first = job.launch(_local_spec(tmp_path), run)
    job.launch(_local_spec(tmp_path, name="t2"), run)
    archived = list((run / "training" / "jobs").glob("*.json"))
    assert len(archived) == 1 and json.loads(archived[0].read_text())["job_id"] == first.job_id
    assert json.loads((run / "training" / "job.json").read_text())["job_id"] == "dry-run-t2"
    assert not [p for p in (run / "training").iterdir() if p.name.endswith(".tmp")]


def test_load_job_errors_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match="run notebook 04_launch_training"):
        job.load_job(tmp_path)
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "job.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        job.load_job(tmp_path)


# ------------------------------------------------------------------------------ submitted jobs, dispatch


def test_submitted_job_dispatches_to_its_backend(tmp_path, runs_root, scripted_backend):
    run = runs_root / "r3"
    spec = _local_spec(tmp_path, dry_run=False)
    handle = job.launch(spec, run)
    assert isinstance(handle, _ScriptedHandle)
    record = job.read_job(run)
    assert record["dry_run"] is False and record["handle"] == {"backend": "local", "job_id": "job-1",
                                                               "script": ["running"]}
    again = job.load_job(run)
    assert isinstance(again, _ScriptedHandle) and again.run_dir == run and again.job_id == "job-1"


def test_launch_reattaches_to_a_running_job_and_refuses_other_settings(tmp_path, runs_root, scripted_backend,
                                                                        monkeypatch):
    run = runs_root / "r4"
    first = job.launch(_local_spec(tmp_path, dry_run=False), run)
    submitted = []
    monkeypatch.setattr(scripted_backend, "submit", lambda plan, run_dir: submitted.append(plan) or first)
    again = job.launch(_local_spec(tmp_path, dry_run=False), run)
    assert again.job_id == first.job_id and not submitted  # the same job, not a second one
    with pytest.raises(UserError, match=r"still running .* other settings \(hyper.learning_rate: 0.001 -> 0.002\)"):
        job.launch(_local_spec(tmp_path, dry_run=False, hyper={"learning_rate": 2e-3}), run)
    with pytest.raises(UserError, match="still running"):
        job.launch(_local_spec(tmp_path, dry_run=False), run, restart=True)
    assert not submitted


def test_a_completed_job_is_reused_and_other_settings_need_restart(tmp_path, runs_root, scripted_backend,
                                                                  monkeypatch):
    scripted_backend.script = ["completed"]
    run = runs_root / "r5"
    first = job.launch(_local_spec(tmp_path, dry_run=False), run)
    submitted = []
    original = scripted_backend.submit
    monkeypatch.setattr(scripted_backend, "submit", lambda plan, run_dir: submitted.append(plan) or original(
        plan, run_dir))
    assert job.launch(_local_spec(tmp_path, dry_run=False), run).job_id == first.job_id and not submitted
    changed = _local_spec(tmp_path, dry_run=False, hyper={"lora_rank": 8})
    with pytest.raises(UserError, match="restart: true"):
        job.launch(changed, run)
    job.launch(changed, run, restart=True)
    assert len(submitted) == 1
    assert job.read_job(run)["spec"]["hyper"]["lora_rank"] == 8
    assert len(list((run / "training" / "jobs").glob("*.json"))) == 1  # the old record is kept


def test_a_moved_run_folder_relaunches_as_the_same_job(tmp_path, runs_root, scripted_backend, monkeypatch):
    """job.json stores the run's own paths relative to it, so a moved run is not a job "with other settings"."""
    scripted_backend.script = ["completed"]
    run = runs_root / "r7"
    (run / "data").mkdir(parents=True)
    _local_spec(tmp_path)  # writes tmp_path/train.jsonl
    shutil.copy(tmp_path / "train.jsonl", run / "data" / "train.jsonl")

    def spec_in(folder):
        return _local_spec(tmp_path, dry_run=False, train_data=str(folder / "data" / "train.jsonl"),
                           output=str(folder / "training"))

    first = job.launch(spec_in(run), run)
    assert job.read_job(run)["spec"]["train_data"] == "data/train.jsonl"
    moved = runs_root / "moved"
    shutil.move(run, moved)
    submitted = []
    monkeypatch.setattr(scripted_backend, "submit", lambda plan, run_dir: submitted.append(plan))
    assert job.launch(spec_in(moved), moved).job_id == first.job_id and not submitted
    assert job.load_spec(moved).train_data == str(moved / "data" / "train.jsonl")


def test_a_dry_run_never_hides_a_real_job(tmp_path, runs_root, scripted_backend):
    scripted_backend.script = ["completed"]
    run = runs_root / "r6"
    job.launch(_local_spec(tmp_path, dry_run=False), run)
    handle = job.launch(_local_spec(tmp_path, dry_run=True), run)
    assert handle.status() == "planned"
    assert job.read_job(run)["dry_run"] is False


def test_await_job_raises_wait_timeout_while_the_job_runs(tmp_path):
    from nbkit.errors import WaitTimeout

    stuck = _ScriptedHandle("j", tmp_path, ["running"])
    with pytest.raises(WaitTimeout, match=r"job j is still running at step \d/4 after waiting 0 s"):
        job.await_job(stuck, timeout=0.05)
    assert job.await_job(_ScriptedHandle("j", tmp_path, ["running", "completed"]), timeout=None) == "completed"


def test_wait_polls_until_terminal_or_timeout(tmp_path):
    done = _ScriptedHandle("j", tmp_path, ["pending", "running", "running", "completed"])
    assert done.wait(poll_s=0.0, progress=True) == "completed" and done.polls == 4
    stuck = _ScriptedHandle("j", tmp_path, ["running"])
    assert stuck.wait(timeout=0.05, poll_s=0.01, progress=False) == "running"


# ---------------------------------------------------------------------------------------- registry


def test_get_backend_errors(monkeypatch, tmp_path):
    with pytest.raises(UserError, match="unknown training backend 'ec2'"):
        job.get_backend("ec2")
    monkeypatch.setitem(job.BACKEND_MODULES, "bedrock", "nbkit.train._no_such_backend")
    with pytest.raises(UserError, match="not part of this installation"):
        job.get_backend("bedrock")
    (tmp_path / "needs_dep_backend.py").write_text("import surely_not_installed_pkg  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(job.BACKEND_MODULES, "bedrock", "needs_dep_backend")
    with pytest.raises(UserError, match="surely_not_installed_pkg.*pip install"):
        job.get_backend("bedrock")
    (tmp_path / "half_backend.py").write_text("def plan(spec):\n    return None\n")
    monkeypatch.setitem(job.BACKEND_MODULES, "bedrock", "half_backend")
    with pytest.raises(UserError, match="lacks submit, handle_from_dict"):
        job.get_backend("bedrock")


# --------------------------------------------------------------------------------------------- CLI


def _params_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(body)
    return path


def test_cli_dry_run_prints_spec_derived_and_plan(tmp_path, runs_root, capsys):
    train = _local_spec(tmp_path).train_data
    path = _params_file(tmp_path, f"seed: 3\n04_launch_training:\n  dry_run: false\n  train_data: {train}\n"
                                  "  max_steps: 20\n")
    code = cli.main(["train", "--params", str(path), "--dry-run", "--out", str(runs_root / "c1")])
    out = capsys.readouterr().out
    assert code == 0
    assert "hyper.max_steps" in out and "total steps" in out and "local plan for job 'rft-c1'" in out
    record = json.loads((runs_root / "c1" / "training" / "job.json").read_text())
    assert record["dry_run"] is True and record["spec"]["hyper"]["max_steps"] == 20
    assert record["spec"]["hyper"]["seed"] == 3


def test_cli_bad_params_exit_2_with_the_field(tmp_path, runs_root, capsys):
    path = _params_file(tmp_path, "04_launch_training:\n  global_batch_size: 60\n")
    assert cli.main(["train", "--params", str(path), "--out", str(runs_root / "c2")]) == 2
    assert "hyper.global_batch_size = 60" in capsys.readouterr().err
    path = _params_file(tmp_path, "01_explore_data: {}\n")
    assert cli.main(["train", "--params", str(path), "--out", str(runs_root / "c3")]) == 2
    assert "no 04_launch_training section" in capsys.readouterr().err


def test_cli_waits_and_maps_status_to_exit_code(tmp_path, runs_root, scripted_backend, capsys, monkeypatch):
    from nbkit.train import cli as train_cli

    monkeypatch.setattr(train_cli, "POLL_S", 0.01)
    train = _local_spec(tmp_path).train_data
    path = _params_file(tmp_path, f"04_launch_training:\n  dry_run: false\n  train_data: {train}\n")
    scripted_backend.script = ["running", "failed"]
    assert cli.main(["train", "--params", str(path), "--out", str(runs_root / "c4"), "--timeout", "5"]) == 1
    scripted_backend.script = ["running"]
    assert cli.main(["train", "--params", str(path), "--out", str(runs_root / "c5"), "--timeout", "0.05"]) == 3
    assert cli.main(["train", "--params", str(path), "--out", str(runs_root / "c6"), "--no-wait"]) == 0
    assert "job job-1: failed; recorded in" in capsys.readouterr().out
