"""nbkit.runner: statuses come from what happened, failures stop the pipeline and say where."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml
from pydantic import Field

from nbkit import cli, params, paths, runner
from nbkit.errors import UserError
from nbkit.layout import RunLayout

pytestmark = pytest.mark.slow


class _A(params.NotebookParams):
    notebook = "91_first"
    value: int = Field(1, description="a number")


class _B(params.NotebookParams):
    notebook = "92_second"


def _notebook(folder, name, body):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('run_dir: str = ""  # run folder\nseed: int = 0  # seed\n' + (
        "value: int = 1  # a number\n" if name == "91_first" else ""))
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    """Two throwaway notebooks registered as a pipeline; returns a function that writes the second's body."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(paths, "NOTEBOOKS", folder)
    monkeypatch.setattr(params, "NOTEBOOKS", {"91_first": _A, "92_second": _B})
    _notebook(folder, "91_first", "import pathlib\npathlib.Path(run_dir, 'first.txt').write_text(str(value))\n"
              "from types import SimpleNamespace\nfrom nbkit import report\n"
              "report.headline(SimpleNamespace(run_dir=run_dir, notebook='91_first'), f'value is {value}')")
    pfile = tmp_path / "p.yaml"
    pfile.write_text("seed: 3\n91_first:\n  value: 5\n92_second: {}\n")

    def second(body):
        _notebook(folder, "92_second", body)
        return pfile

    return second


def test_ok_pipeline_writes_status_params_report_and_index(pipeline, tmp_path):
    pfile = pipeline("print('fine')")
    run = tmp_path / "run"
    jobs = runner.run_pipeline(pfile, run)
    assert [j.status for j in jobs] == ["ok", "ok"]
    assert (run / "first.txt").read_text() == "5"
    status = json.loads((run / "91_first" / "status.json").read_text())
    assert status["status"] == "ok" and status["notebook"] == "91_first" and status["error"] is None
    assert yaml.safe_load((run / "91_first" / "params.yaml").read_text()) == {
        "run_dir": str(run), "seed": 3, "value": 5}
    report = (run / "92_second" / "report.html").read_text()
    assert "fine" in report and "print(" not in report  # outputs kept, code hidden
    index = (run / "index.html").read_text()
    assert "value is 5" in index and "92_second/report.html" in index


def test_failure_names_cell_and_error_and_stops(pipeline, tmp_path, capsys):
    pfile = pipeline("x = 1\nraise RuntimeError('reward exploded')")
    run = tmp_path / "run"
    jobs = runner.run_pipeline(pfile, run, only=["92"])
    status = json.loads((run / "92_second" / "status.json").read_text())
    assert jobs[0].status == status["status"] == "failed"
    assert status["error"] == "RuntimeError: reward exploded"
    assert status["cell"] is not None
    err = capsys.readouterr().err
    assert "92_second failed" in err and "--from 92" in err and "92_second.ipynb" in err


def test_a_failed_notebooks_report_shows_the_message_and_the_fix_with_the_traceback_folded(pipeline, tmp_path):
    """The report used to show papermill's red banner and a traceback for a UserError whose message is the story."""
    pfile = pipeline("from nbkit.errors import UserError\n"
                     "raise UserError('data/train.jsonl has 3 records: give at least 10 (n_train)')")
    run = tmp_path / "run"
    runner.run_pipeline(pfile, run, only=["92"])
    report = (run / "92_second" / "report.html").read_text()
    assert "An Exception was encountered" not in report and "papermill encountered" not in report
    assert "This notebook did not finish." in report and "The notebook stopped here" in report
    assert "data/train.jsonl has 3 records: give at least 10 (n_train)" in report
    assert "nbkit run --params" in report and "--from 92" in report  # how to continue
    folded = report.split("<details><summary>traceback</summary>", 1)
    assert len(folded) == 2 and "Traceback" not in folded[0].split("The notebook stopped here")[1]
    assert "\x1b[" not in report  # no terminal colour codes


def test_reports_leave_out_widgets_and_fold_log_output(pipeline, tmp_path):
    pfile = pipeline("import sys, ipywidgets\nprint('result line')\nprint('a library warning', file=sys.stderr)\n"
                     "display(ipywidgets.IntSlider())")
    run = tmp_path / "run"
    runner.run_pipeline(pfile, run, only=["92"])
    report = (run / "92_second" / "report.html").read_text()
    assert "result line" in report and "IntSlider" not in report
    assert '<details class="nbkit-log"><summary>log output</summary><pre>a library warning' in report
    status = json.loads((run / "92_second" / "status.json").read_text())
    assert status["executed_notebook"] == "92_second/92_second.ipynb"  # relative: the run folder travels


def test_timeout_is_recorded_as_timeout(pipeline, tmp_path):
    pfile = pipeline("import time\ntime.sleep(60)")
    run = tmp_path / "run"
    jobs = runner.run_pipeline(pfile, run, only=["92"], cell_timeout=2)
    assert jobs[0].status == "timeout"
    assert json.loads((run / "92_second" / "status.json").read_text())["status"] == "timeout"


def test_dead_kernel_is_recorded_as_dead_kernel(pipeline, tmp_path):
    pfile = pipeline("import os\nos._exit(1)")
    jobs = runner.run_pipeline(pfile, tmp_path / "run", only=["92"])
    assert jobs[0].status == "dead_kernel"


def test_first_failure_stops_later_notebooks(pipeline, tmp_path, monkeypatch):
    pfile = pipeline("print('never')")
    folder = paths.NOTEBOOKS
    _notebook(folder, "91_first", "raise ValueError('bad data')")
    jobs = runner.run_pipeline(pfile, tmp_path / "run")
    assert [j.status for j in jobs] == ["failed", "pending"]
    assert not (tmp_path / "run" / "92_second" / "status.json").exists()


def test_bad_section_fails_before_anything_runs(pipeline, tmp_path):
    pfile = pipeline("print('fine')")
    pfile.write_text("91_first:\n  valeu: 5\n92_second: {}\n")
    with pytest.raises(UserError, match="valeu: unknown parameter"):
        runner.run_pipeline(pfile, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_cli_exit_codes(pipeline, tmp_path):
    pfile = pipeline("raise SystemExit(3)")
    assert cli.main(["run", "--params", str(pfile), "--out", str(tmp_path / "a"), "--only", "91"]) == 0
    assert cli.main(["run", "--params", str(pfile), "--out", str(tmp_path / "b"), "--from", "92"]) == 1
    assert cli.main(["run", "--params", str(tmp_path / "missing.yaml")]) == 2


# ------------------------------------------------------------------ waits, locks, live status, the index


def test_a_wait_that_runs_out_is_a_timeout_with_the_command_that_continues(pipeline, tmp_path, capsys):
    pfile = pipeline("from nbkit.errors import WaitTimeout\nraise WaitTimeout('job j is still running at step 3/9')")
    run = tmp_path / "run"
    jobs = runner.run_pipeline(pfile, run, overrides=["91_first.value=6"], live=False)
    assert [j.status for j in jobs] == ["ok", "timeout"] and runner.exit_code(jobs) == runner.EXIT_TIMEOUT
    assert json.loads((run / "92_second" / "status.json").read_text())["status"] == "timeout"
    err = capsys.readouterr().err
    assert "92_second timeout" in err and "job j is still running at step 3/9" in err
    assert "--from 92 --set 91_first.value=6" in err and "Nothing was lost" in err
    assert (run / "first.txt").read_text() == "6"  # the override reached the notebook


def test_resume_command_lifts_the_wait_cap_of_notebook_04(tmp_path):
    command = runner.resume_command(tmp_path / "p.yaml", tmp_path / "run", "04_launch_training",
                                    ["04_launch_training.timeout_s=60", "seed=2"], "timeout")
    assert command.endswith("--from 04 --set seed=2 --set 04_launch_training.timeout_s=0")


def test_a_second_pipeline_into_the_same_run_folder_gets_one_line(pipeline, tmp_path, capsys):
    from nbkit import locking

    pfile = pipeline("print('fine')")
    run = tmp_path / "run"
    run.mkdir()
    with locking.exclusive(RunLayout(run).lock, f"run folder {run}", command="nbkit run --params a.yaml"):
        code = cli.main(["run", "--params", str(pfile), "--out", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"run folder {run} is in use by pid" in err and "nbkit run --params a.yaml" in err
    assert not (run / "91_first").exists()
    assert runner.run_pipeline(pfile, run, live=False)[0].status == "ok"  # free again once released


def test_index_marks_interrupted_and_stale_notebooks(tmp_path):
    run = tmp_path / "run"
    rows = {"91_first": {"status": "ok", "started_ts": 100.0, "ended_ts": 300.0, "duration_s": 200.0},
            "92_second": {"status": "ok", "started_ts": 150.0, "ended_ts": 160.0, "duration_s": 10.0},
            "93_third": {"status": "running", "started_ts": 400.0, "pid": 2 ** 22 + 7, "duration_s": None}}
    for name, row in rows.items():
        (run / name).mkdir(parents=True)
        (run / name / "status.json").write_text(json.dumps({"notebook": name, **row}))
    statuses = {s["notebook"]: s for s in runner.read_statuses(run)}
    assert not statuses["91_first"]["stale"] and statuses["92_second"]["stale"]  # 91 re-ran after 92 started
    assert statuses["93_third"]["status"] == "interrupted" and not statuses["93_third"]["stale"]
    page = runner.write_index(run, "p.yaml").read_text()
    assert page.count("stale: an earlier notebook ran again") == 1 and "interrupted" in page


def test_live_status_line_shows_cell_and_progress_in_a_log(tmp_path):
    import io
    import time

    from nbkit import progress

    stream = io.StringIO()
    pfile = tmp_path / "progress.json"
    status = runner.LiveStatus("04_launch_training", pfile, stream, log_every_s=0.5)
    status.cell(8, 9)
    pfile.write_text(json.dumps([{"what": "training job j", "n": 129, "total": 400, "unit": "step",
                                  "note": "running, reward 0.412", "elapsed_s": 65.0, "eta_s": 136.0}]))
    with status:
        time.sleep(2.5)
    lines = stream.getvalue().splitlines()
    assert lines and lines[0].startswith("  04_launch_training · cell 8/9 · ")
    assert "training job j 129/400 (running, reward 0.412), 1m05s, ETA 2m16s" in lines[0]
    assert progress.describe([]) == ""


def test_kernels_talk_over_ipc_without_the_tcp_warning(pipeline, tmp_path, capfd):
    pfile = pipeline("print('fine')")
    runner.run_pipeline(pfile, tmp_path / "run", only=["92"], live=False)
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out
