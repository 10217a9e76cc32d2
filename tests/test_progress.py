"""Progress of long work: the runner's per-stage lines and its event stream
(`Runner(on_event=...)`, `ouroboros run/demo --log-json FILE`)."""

import io
import json
import sys
import types

import pytest

from conftest import assert_user_error
from ouroboros import cli
from ouroboros.runner import JsonEventLog, Runner, Stage


@pytest.fixture(scope="module")
def event_kinds():
    """`t_ev` writes its param `text`; `t_ev_fail` raises. In-process (workers=1)."""
    from ouroboros.io import atomic_path
    from ouroboros.runner import STAGE_KINDS, stage_kind


    @stage_kind("t_ev", ".txt")
    def text_stage(params, deps, out):
        with atomic_path(out) as tmp:
            tmp.write_text(params["text"])

    @stage_kind("t_ev_fail", ".txt")
    def fail_stage(params, deps, out):
        raise RuntimeError("stage failed")

    yield
    for kind in ("t_ev", "t_ev_fail"):
        STAGE_KINDS.pop(kind, None)


def _graph():
    a = Stage("t_ev", {"text": "a"}, label="first")
    return a, Stage("t_ev", {"text": "b"}, {"up": a}, label="second")


def test_events_started_finished_then_cached(tmp_path, event_kinds):
    a, b = _graph()
    events = []
    Runner(tmp_path, workers=1, progress=False, on_event=events.append).run([b])
    assert [(e["event"], e["label"], e["key"], e["kind"]) for e in events] == [
        ("started", "first", a.key, "t_ev"), ("finished", "first", a.key, "t_ev"),
        ("started", "second", b.key, "t_ev"), ("finished", "second", b.key, "t_ev")]
    assert all(e["seconds"] >= 0 for e in events if e["event"] == "finished")
    events.clear()
    Runner(tmp_path, workers=1, progress=False, on_event=events.append).run([b])
    assert [(e["event"], e["label"]) for e in events] == [("cached", "first"), ("cached", "second")]


def test_a_failed_stage_is_an_event_in_the_json_log(tmp_path, event_kinds):
    a, _ = _graph()
    bad = Stage("t_ev_fail", {}, {"up": a}, label="broken")
    log = JsonEventLog(tmp_path / "events.jsonl")
    with pytest.raises(RuntimeError, match="stage failed"):
        Runner(tmp_path / "run", workers=1, progress=False, on_event=log).run([bad])
    log.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # one JSON object per line
    assert [e["event"] for e in events] == ["started", "finished", "started", "failed"]
    assert events[-1]["label"] == "broken" and events[-1]["key"] == bad.key
    assert events[-1]["error"] == "RuntimeError: stage failed" and events[-1]["seconds"] >= 0
    assert all(isinstance(e["time"], float) for e in events)


def test_no_event_no_log_file(tmp_path):
    log = JsonEventLog(tmp_path / "events.jsonl")
    log.close()
    assert not (tmp_path / "events.jsonl").exists()  # created at the first event only


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_line_per_finished_stage_unless_quiet(tmp_path, event_kinds, capsys):
    _, b = _graph()
    Runner(tmp_path / "loud", workers=1, progress=True).run([b])
    err = capsys.readouterr().err  # not a terminal: plain lines, no bar, no carriage returns
    assert "[1/2] t_ev first: " in err and "[2/2] t_ev second: " in err
    assert "\r" not in err and len(err.splitlines()) == 2
    Runner(tmp_path / "quiet", workers=1, progress=False).run([b])
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_bar(tmp_path, event_kinds, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    _, b = _graph()
    Runner(tmp_path / "loud", workers=1, progress=True).run([b])
    err = terminal.getvalue()
    assert "[1/2] t_ev first: " in err and "[2/2] t_ev second: " in err
    assert "stages: 100%" in err and "2/2" in err and "\r" in err  # the bar: done / total, redrawn in place


def test_a_notebook_gets_the_notebook_bar(monkeypatch):
    from ouroboros import progress

    made = []
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    fake = types.ModuleType("tqdm.notebook")
    fake.tqdm = lambda **kw: made.append(kw) or "notebook bar"
    monkeypatch.setitem(sys.modules, "tqdm.notebook", fake)
    assert progress.bar(5, desc="stages") == "notebook bar" and made[0]["total"] == 5


@pytest.mark.parametrize("where", ["missing/events.jsonl", "."])
def test_log_json_needs_a_file_in_an_existing_folder(tmp_path, capsys, where):
    code = cli.main(["demo", "--out", str(tmp_path / "run"), "--quiet", "--log-json", str(tmp_path / where)])
    err = capsys.readouterr().err
    assert_user_error(type("P", (), {"returncode": code, "stderr": err})(), "--log-json", "existing folder")
    assert not (tmp_path / "run").exists()
