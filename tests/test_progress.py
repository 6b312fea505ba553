"""nbkit.progress: what long steps report, to a person and to the pipeline runner."""

from __future__ import annotations

import json

from nbkit import progress


def test_tasks_publish_open_steps_with_counts_and_eta(tmp_path, monkeypatch):
    target = tmp_path / "progress.json"
    monkeypatch.setenv(progress.ENV, str(target))
    monkeypatch.setattr(progress, "WRITE_EVERY_S", 0.0)
    with progress.Task("sampling", total=10, unit="sample", bar=False) as outer:
        outer.update(4, note="batch 1")
        with progress.Task("scoring", total=3, bar=False) as inner:
            inner.update()
            steps = progress.read(target)
            assert [(s["what"], s["n"], s["total"]) for s in steps] == [("sampling", 4, 10), ("scoring", 1, 3)]
            assert steps[0]["note"] == "batch 1" and steps[0]["eta_s"] is not None
        assert [s["what"] for s in progress.read(target)] == ["sampling"]
    assert json.loads(target.read_text()) == []


def test_eta_is_the_average_rate_so_far():
    task = progress.Task("x", total=100, bar=False)
    task.started -= 10.0  # ten seconds in
    task.set(25)
    assert round(task.eta_s()) == 30
    task.set(100)
    assert task.eta_s() is None
    task.close()


def test_track_counts_an_iterable_and_nothing_is_written_without_the_runner(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    assert list(progress.track(range(5), "counting", bar=False)) == [0, 1, 2, 3, 4]
    assert list(tmp_path.iterdir()) == []


def test_describe_and_duration():
    steps = [{"what": "warm start", "n": 300, "total": 3000, "note": "loss 1.2", "elapsed_s": 3725, "eta_s": None},
             {"what": "scoring", "n": 2, "total": None}]
    assert progress.describe(steps) == "warm start 300/3000 (loss 1.2), 1h02m > scoring 2"
    assert progress.duration(59.6) == "1m00s" and progress.duration(None) == "?"
