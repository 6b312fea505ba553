"""Fault family: rewards that start processes, and a harness that is killed (issue 12, finding 2).

Each reward here writes the pid of every process it starts (and of the worker it runs in) to a file, so the
test can check afterwards that none of them is still running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from nbkit.cli import main
from nbkit.rewards import load_reward, make_sample, run_harness

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process checks read /proc")

RECORD = {"id": "r", "messages": [{"role": "user", "content": "2+2?"}], "reference_answer": "4"}

SPAWNER = textwrap.dedent('''
    import os, subprocess, time

    def stat(pid):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return None

    def me(pid):  # "pid:start time": pids are reused, the pair is not
        return f"{pid}:{stat(pid)[19]}"

    def alive(token):
        pid, start = token.split(":")
        fields = stat(pid)
        return fields is not None and fields[0] != "Z" and fields[19] == start

    def lambda_handler(event, context):
        log = os.environ["PID_LOG"]
        if event[0]["messages"][-1]["content"] == "census":  # how many earlier calls' processes still run?
            left = [token for line in open(log) for token in line.split()[1:] if alive(token)]
            return [{"id": s["id"], "aggregate_reward_score": float(len(left))} for s in event]
        pids = [me(os.getpid())]
        for sample in event:
            for _ in range(3):  # plain children, left running
                pids.append(me(subprocess.Popen(["sleep", "300"]).pid))
            # a grandchild in its own session: it leaves the process group and its parent exits at once
            out = subprocess.run(["setsid", "sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                                 capture_output=True, text=True)
            pids.append(me(int(out.stdout.split()[0])))
            if sample["messages"][-1]["content"] == "hang":
                with open(log, "a") as fh:
                    fh.write(" ".join(pids) + "\\n")
                time.sleep(3600)
        with open(log, "a") as fh:
            fh.write(" ".join(pids) + "\\n")
        return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]
''')


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _alive(pid: int, started: str | None = None) -> bool:
    """Running, and the same process (a zombie is dead: it only waits for its parent to read its status).
    pids are reused (pid_max is often 32768 and other work starts processes): a start time tells them apart."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z" and (started is None or stat[19] == started)


def _logged(log: Path) -> dict[int, str]:
    """pid -> start time of every process the reward logged."""
    tokens = log.read_text().split() if log.exists() else []
    return {int(pid): start for pid, start in (token.split(":") for token in tokens)}


def _wait_dead(known: dict[int, str | None], within: float = 10.0) -> list[int]:
    """The processes still running after `within` seconds."""
    deadline = time.monotonic() + within
    while (alive := [p for p, t in known.items() if _alive(p, t)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.fixture
def spawner(tmp_path, monkeypatch):
    path = tmp_path / "spawner.py"
    path.write_text(SPAWNER)
    log = tmp_path / "pids.log"
    monkeypatch.setenv("PID_LOG", str(log))
    return path, log


def _events(tmp_path: Path, *responses: str) -> Path:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(make_sample(RECORD, r, sample_id=f"s{i}")) + "\n"
                              for i, r in enumerate(responses)))
    return events


def test_children_of_a_reward_do_not_outlive_nbkit_reward_check(spawner, tmp_path, capsys):
    path, log = spawner
    code = main(["reward", "check", str(path), "--events", str(_events(tmp_path, "a", "b", "c")),
                 "--batch-size", "1", "--workers", "2", "--json"])
    assert code == 0, capsys.readouterr()
    assert len(log.read_text().split()) == 2 * 3 * 5  # the check and the determinism pass each started a set
    assert _wait_dead(_logged(log), within=2.0) == []


def test_children_are_killed_after_each_call_not_only_at_the_end(spawner, tmp_path):
    path, log = spawner
    reward = load_reward(str(path))
    samples = [make_sample(RECORD, "x", sample_id="s0"), make_sample(RECORD, "census", sample_id="s1")]
    report = run_harness(reward, samples, batch_size=1, workers=1)  # one worker runs both calls in turn
    assert report.ok and report.score_list == [1.0, 0.0], "the second call found none of the first's processes"
    # and a timed-out call loses its whole process group with its worker
    log.unlink()
    hung = run_harness(reward, [make_sample(RECORD, "hang", sample_id="h")], workers=1, timeout=2.0)
    assert hung.statuses == ["timeout"]
    assert _wait_dead(_logged(log), within=2.0) == [], "the killed worker's children died with it"


HARNESS = textwrap.dedent('''
    import json, sys
    from nbkit.rewards import executors, load_reward, make_sample, run_harness

    if sys.argv[2] == "no-pdeathsig":  # the fallback: no parent-death signal, the watchdog must notice
        real = executors._prctl
        executors._prctl = lambda option, value: option != executors._PR_SET_PDEATHSIG and real(option, value)
    record = {"id": "r", "messages": [{"role": "user", "content": "2+2?"}], "reference_answer": "4"}
    samples = [make_sample(record, "hang", sample_id="h"), make_sample(record, "quick", sample_id="q")]
    run_harness(load_reward(sys.argv[1]), samples, batch_size=1, workers=2, timeout=None)
''')


@pytest.mark.parametrize("mode", ["pdeathsig", "no-pdeathsig"])
def test_killing_the_harness_takes_its_workers_and_their_children_with_it(spawner, tmp_path, mode):
    path, log = spawner
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    harness = subprocess.Popen([sys.executable, str(script), str(path), mode], env=env)
    try:
        deadline = time.monotonic() + 60
        while (log.read_text().count("\n") if log.exists() else 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # one worker hangs in its call, the other has answered and waits for work
        pids = _logged(log)
        assert len(log.read_text().split()) == 10, f"both calls started their processes: {log.read_text()!r}"
        workers = {int(line.split()[0].split(":")[0]) for line in log.read_text().splitlines()}
        assert len(workers) == 2 and all(_alive(w, pids[w]) for w in workers)
    finally:
        harness.kill()
        harness.wait()
    left = _wait_dead(pids, within=10.0)
    assert left == [], f"still running: {[(p, Path(f'/proc/{p}/cmdline').read_bytes()) for p in left]}"
    assert list(scratch.iterdir()) == [], "no crash log or other file is left in the temp folder"


def test_no_crash_log_is_left_unless_something_crashed(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    reward = load_reward("builtin:numeric")
    report = run_harness(reward, [make_sample(RECORD, "4", sample_id=f"s{i}") for i in range(4)], workers=2)
    assert report.ok and list(scratch.iterdir()) == []
    crash = load_reward(str(Path(__file__).parent.parent / "fixtures" / "rewards" / "faulty.py"))
    report = run_harness(crash, [make_sample(RECORD, "segfault", sample_id="x")], workers=1)
    assert report.statuses == ["crash"] and "lambda_handler (faulty.py:" in report.results[0].error
    assert "Fatal Python error: Segmentation fault" in report.output  # the stack is kept in the report
    assert list(scratch.iterdir()) == []


def test_an_idle_worker_whose_parent_vanished_exits(tmp_path):
    # The old worker, blocked on its pipe, held the pipe's other end itself and never saw end-of-file.
    code = textwrap.dedent('''
        import os, sys, time
        from nbkit.rewards.executors import ProcessExecutor
        ex = ProcessExecutor(lambda e, c: [], 1, None)
        w = ex._spawn()
        print(w.proc.pid, open(f"/proc/{w.proc.pid}/stat").read().rsplit(")", 1)[1].split()[19], flush=True)
        os._exit(0)  # the parent dies without stopping its worker
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    worker, started = out.stdout.split()
    assert _wait_dead({int(worker): started}, within=5.0) == []
