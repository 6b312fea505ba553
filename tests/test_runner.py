"""nbkit.runner: statuses come from what happened, failures stop the pipeline and say where."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml
from pydantic import Field

from nbkit import cli, params, paths, runner
from nbkit.errors import UserError

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
