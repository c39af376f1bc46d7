from pathlib import Path

import pytest

from desktop_ft import resources
from desktop_ft.core.datasets import load_dataset, split_rows, to_prompt_completion
from desktop_ft.core.errors import DatasetError

GOOD = '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}'


def test_sample_dataset_is_a_valid_chat_set_in_one_style() -> None:
    data = load_dataset(resources.sample_dataset())
    assert 150 <= len(data) <= 300 and not data.errors
    assert all(r["messages"][-1]["content"].endswith("Done in three steps!") for r in data.rows)


def test_bad_lines_are_reported_with_line_numbers_and_good_rows_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join([
        GOOD,
        '{"messages": [{"role": "user", "content": "Hi"}',                       # 2: broken JSON
        '{"messages": [{"role": "user", "content": "only a question"}]}',         # 3: no assistant
        '{"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}',  # 4
        "",
        GOOD,
    ]), encoding="utf-8")
    data = load_dataset(path)
    assert len(data) == 2 and data.lines == [1, 6]
    by_line = {e.line: e.message for e in data.errors}
    assert set(by_line) == {2, 3, 4}
    assert "JSON" in by_line[2] and "assistant" in by_line[3] and "robot" in by_line[4]


def test_a_file_with_no_usable_row_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "only a question"}]}\n', encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert "line 1" in str(info.value) and "assistant" in str(info.value)


def test_unknown_columns_are_named_with_the_formats_expected(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"foo": "a", "bar": "b"}\n', encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    text = str(info.value)
    assert "foo, bar" in text and "Alpaca" in text and "--columns" in text


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(tmp_path / "e.jsonl")


def test_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\r\n" + GOOD.encode() + b"\r\n")
    assert len(load_dataset(path)) == 2


def test_split_is_seeded_and_disjoint() -> None:
    rows = [{"i": i} for i in range(40)]
    a = split_rows(rows, 0.1, seed=1)
    assert a == split_rows(rows, 0.1, seed=1)
    assert len(a[1]) == 4 and not {r["i"] for r in a[0]} & {r["i"] for r in a[1]}


def test_prompt_completion_puts_the_last_reply_in_the_completion() -> None:
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "a"}]}
    pc = to_prompt_completion(row)
    assert pc["completion"] == [{"role": "assistant", "content": "a"}] and len(pc["prompt"]) == 2


def test_rows_live_on_disk_and_a_file_is_read_once_until_it_changes(tmp_path: Path, monkeypatch) -> None:
    """The window's preview and the training process read a file once between them: the second load of an
    unchanged file comes from the on-disk store, an edited file is read again, and a store behaves as the
    list of rows it holds (indexing, slicing, iteration, split views) with their source lines."""
    import json
    import os

    from desktop_ft.core import datasets as ds
    from desktop_ft.core.datasets import _read, _store

    monkeypatch.setenv("DESKTOP_FT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"Q{i} é"}, {"role": "assistant", "content": f"A{i}"}]}
            for i in range(2500)]  # more than one Arrow batch
    path.write_text("not json\n" + "\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    first = ds.load_dataset(path)
    assert isinstance(first.rows, _store.RowStore)
    assert Path(first.rows.arrow_file).is_relative_to(tmp_path / "cache")
    assert first.rows == rows and list(first.rows) == rows and len(first) == 2500
    assert first.rows[-1] == rows[-1] and first.rows[1000:1003] == rows[1000:1003]
    assert first.lines[0] == 2 and first.lines[-1] == 2501 and [e.line for e in first.errors] == [1]
    train, val = split_rows(first.rows, 0.1, 7)
    assert len(train) + len(val) == 2500 and len(val) == 250
    assert sorted(r["messages"][0]["content"] for r in [*train, *val]) == sorted(r["messages"][0]["content"]
                                                                                 for r in rows)
    listed_train, listed_val = split_rows(rows, 0.1, 7)
    assert list(train) == listed_train and list(val) == listed_val  # the same split as a list gets

    monkeypatch.setattr(_read, "open_source", lambda *a: (_ for _ in ()).throw(AssertionError("read again")))
    monkeypatch.setattr(ds, "open_source", _read.open_source)
    again = ds.load_dataset(path)
    assert again.rows == rows and [e.line for e in again.errors] == [1] and again.format == first.format
    monkeypatch.undo()
    monkeypatch.setenv("DESKTOP_FT_CACHE", str(tmp_path / "cache"))
    path.write_text("\n".join(json.dumps(r) for r in rows[:10]) + "\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))  # even a file put back with an old time is another file: its size changed
    edited = ds.load_dataset(path)
    assert edited.rows == rows[:10] and not edited.errors


def test_validation_is_capped_and_a_smaller_cap_holds_out_a_subset() -> None:
    """5% of a big dataset would make every evaluation take hours on a CPU: at most
    data.max_validation_rows are held out, taken from the same seeded order."""
    from desktop_ft.core.config import RunConfig

    rows = [{"text": str(i)} for i in range(40_000)]
    cap = RunConfig().data.max_validation_rows
    train, val = split_rows(rows, 0.05, 3, cap)
    assert len(val) == cap and len(train) == 40_000 - cap
    assert {r["text"] for r in train}.isdisjoint(r["text"] for r in val)
    _, fewer = split_rows(rows, 0.05, 3, 10)
    assert {r["text"] for r in fewer} <= {r["text"] for r in val} and len(fewer) == 10
    assert split_rows(rows[:100], 0.05, 3, cap) == split_rows(rows[:100], 0.05, 3)  # small data: unchanged


def test_the_cache_keeps_the_newest_stores_and_any_still_in_use(tmp_path: Path, monkeypatch) -> None:
    import gc
    import os

    from desktop_ft.core.datasets import _store

    monkeypatch.setenv("DESKTOP_FT_CACHE", str(tmp_path / "cache"))
    held = load_dataset(_write(tmp_path / "held.jsonl", 0))  # the window still shows this one
    for i in range(1, _store.KEEP + 5):
        load_dataset(_write(tmp_path / f"f{i}.jsonl", i))
    gc.collect()
    for p in _store.rows_root().iterdir():  # all long unused, the held one the oldest: the count alone decides
        when = 900_000_000 if p == Path(held.rows.arrow_file).parent else 1_000_000_000
        os.utime(p, (when, when))
    load_dataset(_write(tmp_path / "new.jsonl", 99))  # writing a store prunes
    assert len(list(_store.rows_root().iterdir())) == _store.KEEP + 1  # the newest, and the held one
    assert Path(held.rows.arrow_file).exists() and list(held.rows) == [{"text": "row 0"}]


def _write(path: Path, i: int) -> Path:
    path.write_text(f'{{"text": "row {i}"}}\n', encoding="utf-8")
    return path
