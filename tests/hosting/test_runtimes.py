"""ProcessRuntime's log reading: ``tail`` and ``follow`` hand out whole lines only, and a
cursor that picks up exactly where they stopped."""

from __future__ import annotations

from apps.hosting.runtimes import ProcessRuntime


def test_tail_and_follow_give_whole_lines_once(tmp_path):
    runtime = ProcessRuntime(log_dir=tmp_path)
    log = runtime._log_path("4242")
    assert runtime.tail("4242").lines == [] and runtime.follow("4242", 0).lines == []  # no log yet

    log.write_bytes(b"one\ntwo\nthr")  # a line still being written
    first = runtime.tail("4242")
    assert (first.lines, first.cursor) == (["one", "two"], 8)
    assert runtime.follow("4242", first.cursor).lines == []

    with log.open("ab") as out:
        out.write(b"ee\nfour \xff\n")
    later = runtime.follow("4242", first.cursor)
    assert later.lines == ["three", "four \ufffd"]  # undecodable bytes replaced, never an error
    assert runtime.follow("4242", later.cursor).lines == []
    assert runtime.tail("4242", lines=2).lines == ["three", "four \ufffd"]


def test_tail_of_a_long_log_starts_at_a_line(tmp_path):
    runtime = ProcessRuntime(log_dir=tmp_path)
    lines = [f"line {n:06d}" for n in range(20_000)]  # ~240 KB: more than one tail window
    runtime._log_path("7").write_text("\n".join(lines) + "\n")
    tail = runtime.tail("7", lines=50)
    assert tail.lines == lines[-50:]
    assert tail.cursor == runtime._log_path("7").stat().st_size
    everything = runtime.tail("7", lines=100_000).lines
    assert everything == lines[-len(everything) :] and everything[0].startswith("line ")
