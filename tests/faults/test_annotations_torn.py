"""Fault family: a crash in the middle of saving an annotation (issue 12, finding 4).

A line cut short made every later read of review/annotations.jsonl raise, so all earlier annotations became
unreadable, and the next add() was glued onto the partial line and lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from nbkit.review.annotations import AnnotationStore, AnnotationWarning


def _store(tmp_path) -> AnnotationStore:
    store = AnnotationStore(tmp_path / "review" / "annotations.jsonl")
    store.add("tuned/p1/0", "correct", "fine", reward=1.0)
    store.add("tuned/p2/0", "wrong answer", "6 not 5", flagged=True)
    return store


@pytest.mark.parametrize("cut", [5, 23, -2], ids=["in-a-key", "in-a-value", "before-the-brace"])
def test_a_torn_last_line_is_skipped_and_the_next_add_starts_on_a_new_line(tmp_path, cut):
    store = _store(tmp_path)
    whole = json.dumps({"key": "tuned/p3/0", "label": "unclear", "note": "half written"})
    with store.path.open("a") as fh:
        fh.write(whole[:cut])  # the crash: no newline, half a record
    with pytest.warns(AnnotationWarning, match=r"annotations.jsonl:3 skipped: it is incomplete"):
        assert set(store.latest()) == {"tuned/p1/0", "tuned/p2/0"}
    assert store.skipped == [(3, "it is incomplete, a save cut short by a crash")]
    store.add("tuned/p4/0", "correct", "after the crash")
    with pytest.warns(AnnotationWarning, match=r":3 skipped"):  # still there, still skipped, nothing else
        latest = store.latest()
    assert set(latest) == {"tuned/p1/0", "tuned/p2/0", "tuned/p4/0"}
    assert latest["tuned/p4/0"]["note"] == "after the crash"
    assert store.path.read_text().splitlines()[3] == json.dumps(latest["tuned/p4/0"], ensure_ascii=False)


def test_a_character_cut_in_half_is_a_torn_line_too(tmp_path):
    store = _store(tmp_path)
    with store.path.open("ab") as fh:
        fh.write('{"key": "k", "note": "caf\u00e9'.encode()[:-1])  # half of the two bytes of é
    with pytest.warns(AnnotationWarning, match="incomplete"):
        assert len(store.read()) == 2
    store.add("k", "correct")
    with pytest.warns(AnnotationWarning):
        assert [r["key"] for r in store.read()] == ["tuned/p1/0", "tuned/p2/0", "k"]


def test_a_line_damaged_by_hand_is_named_and_skipped(tmp_path):
    store = _store(tmp_path)
    with store.path.open("a") as fh:
        fh.write('{"key": oops}\n["not", "an", "annotation"]\n')
    store.add("tuned/p5/0", "correct")
    with pytest.warns(AnnotationWarning) as caught:
        assert len(store.read()) == 3
    assert [str(w.message).split(" skipped")[0].rsplit(":", 1)[1] for w in caught] == ["3", "4"]
    assert "not valid JSON" in str(caught[0].message) and "not an annotation" in str(caught[1].message)


def test_each_add_is_one_write_and_is_fsynced(tmp_path, monkeypatch):
    store = _store(tmp_path)
    writes, syncs = [], []
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real_write(fd, data))
    monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd) or real_fsync(fd))
    store.add("tuned/p6/0", "correct", "x" * 100_000)  # far beyond any stdio buffer
    assert len(writes) == 1 and writes[0].endswith(b"\n") and len(writes[0]) > 100_000
    assert len(syncs) == 1


def test_a_save_killed_midway_loses_nothing_earlier(tmp_path):
    # A real crash: a process appends, then dies in the middle of writing a large annotation by hand.
    store = _store(tmp_path)
    code = textwrap.dedent(f'''
        import os
        fd = os.open({str(store.path)!r}, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b'{{"key": "tuned/p7/0", "note": "' + b"y" * 1000)
        os._exit(9)
    ''')
    subprocess.run([sys.executable, "-c", code], check=False)
    store.add("tuned/p8/0", "correct")
    with pytest.warns(AnnotationWarning, match=":3 skipped"):
        assert list(store.latest()) == ["tuned/p1/0", "tuned/p2/0", "tuned/p8/0"]


def test_concurrent_saves_from_two_processes_never_interleave(tmp_path):
    store = _store(tmp_path)
    code = textwrap.dedent(f'''
        import sys
        from nbkit.review.annotations import AnnotationStore
        store = AnnotationStore({str(store.path)!r})
        for i in range(200):
            store.add(f"{{sys.argv[1]}}/{{i}}", "correct", "n" * (i * 37 % 5000))
    ''')
    procs = [subprocess.Popen([sys.executable, "-c", code, name]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    records = store.read()  # no warning: every line whole
    assert store.skipped == [] and len(records) == 402
    assert {r["key"] for r in records} >= {f"{n}/{i}" for n in "ab" for i in range(200)}
