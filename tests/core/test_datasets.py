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
