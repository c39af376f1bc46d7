"""Each failure in tests/data names its line in a plain sentence, and the good rows around it survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_ft.core import datasets as ds
from desktop_ft.core.errors import DatasetError

DATA = Path(__file__).resolve().parents[1] / "data"

# file → (lines of the rows kept, {line of a bad row: words its message must contain})
ROW_ERRORS = {
    "broken_json_line.jsonl": ([1, 3], {2: ["not valid JSON", "column"]}),
    "truncated.jsonl": ([1, 2], {3: ["not valid JSON"]}),
    "no_assistant.jsonl": ([1, 3], {2: ["no assistant turn"]}),
    "wrong_type.jsonl": ([1], {2: ["'messages' must be a list"], 3: ["message 2", "must be text", "object"]}),
    "empty_field.jsonl": ([1], {2: ["'completion' is empty"], 3: ["'prompt' is empty"], 4: ["no 'completion'"]}),
    "unknown_role.jsonl": ([1], {2: ["unknown role 'robot'", "assistant"]}),
    "bad_utf8.jsonl": ([1, 3], {2: ["UTF-8", "0xe9"]}),
    "broken_array.json": ([2, 3], {4: ["JSON is broken", "line 5", "rows after it were not read"]}),
    "ragged.csv": ([2, 4], {3: ["3 fields", "header has 2", "double quotes"]}),
    "alpaca.parquet": ([1, 2], {3: ["'instruction' is empty"]}),
}


@pytest.mark.parametrize("name", sorted(ROW_ERRORS))
def test_bad_rows_are_named_by_line_and_good_rows_kept(name: str) -> None:
    kept, problems = ROW_ERRORS[name]
    data = ds.load_dataset(DATA / name)
    assert data.lines == kept
    by_line = {e.line: e.message for e in data.errors}
    assert set(by_line) == set(problems)
    for line, words in problems.items():
        for word in words:
            assert word in by_line[line], (line, by_line[line])


# file → words the one error must contain (file name always; the line where there is one)
FILE_ERRORS = {
    "empty.jsonl": ["empty.jsonl", "is empty"],
    "unknown_schema.jsonl": ["columns found: foo, bar", "Alpaca", "ShareGPT", "--columns"],
    "bad_utf8.csv": ["bad_utf8.csv line 3", "UTF-8", "0xe9", "CSV UTF-8"],
}


@pytest.mark.parametrize("name", sorted(FILE_ERRORS))
def test_whole_file_problems_are_one_clear_error(name: str) -> None:
    with pytest.raises(DatasetError) as info:
        ds.load_dataset(DATA / name)
    for word in FILE_ERRORS[name] + [name]:
        assert word in str(info.value)


def test_a_file_whose_every_row_is_bad_names_the_first_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('\n{"prompt": "a", "completion": ""}\n{"prompt": "b"}\n')
    with pytest.raises(DatasetError) as info:
        ds.load_dataset(path)
    assert "d.jsonl line 2" in str(info.value) and "2 rows have problems" in str(info.value)


def test_unreadable_file_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.jsonl"
    path.write_text("{}\n")

    real_open = Path.open

    def refuse(self: Path, *args, **kwargs):  # as a file of another user's is (the suite may run as root)
        if self.name == "locked.jsonl":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DatasetError, match="locked.jsonl: cannot be read \\(Permission denied\\)"):
        ds.load_dataset(path)


def test_unsupported_types_and_plain_folders_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "book.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DatasetError, match="CSV UTF-8"):
        ds.load_dataset(tmp_path / "book.xlsx")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "train.jsonl").write_text("{}\n")
    with pytest.raises(DatasetError, match="train.jsonl"):
        ds.load_dataset(tmp_path / "folder")
    (tmp_path / "x.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DatasetError, match="cannot read"):
        ds.load_dataset(tmp_path / "x.bin")


def test_a_broken_parquet_file_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match="cannot be read as Parquet"):
        ds.load_dataset(path)


def test_utf16_text_from_excel_is_read(tmp_path: Path) -> None:
    path = tmp_path / "u.tsv"
    path.write_bytes("prompt\tcompletion\r\nCafé\tOui\r\n".encode("utf-16"))
    assert ds.load_dataset(path).rows == [{"prompt": "Café", "completion": "Oui"}]


def test_semicolon_csv_from_a_european_excel(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text('instruction;input;output\n"Say; hi";;Hi\n', encoding="utf-8")
    assert ds.load_dataset(path).rows == [{"prompt": "Say; hi", "completion": "Hi"}]


def test_common_json_slips_are_named(tmp_path: Path) -> None:
    (tmp_path / "comma.json").write_text('{"data": [\n {"prompt": "a", "completion": "b"},\n]}')
    with pytest.raises(DatasetError, match="comma.json line 3: .*no comma before ']'"):
        ds.load_dataset(tmp_path / "comma.json")
    (tmp_path / "quotes.jsonl").write_text("{'prompt': 'a', 'completion': 'b'}\n")
    with pytest.raises(DatasetError, match="line 1: .*double quotes"):
        ds.load_dataset(tmp_path / "quotes.jsonl")
    (tmp_path / "comment.json").write_text('[\n {"prompt": "a", "completion": "b"}, // first\n {"prompt": "c"}\n]')
    data = ds.load_dataset(tmp_path / "comment.json")
    assert data.lines == [2] and "no comments" in data.errors[0].message and data.errors[0].line == 2


def test_jsonl_files_joined_together_keep_their_byte_order_marks_out_of_the_way(tmp_path: Path) -> None:
    row = b'{"prompt": "a", "completion": "b"}'
    path = tmp_path / "joined.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + row + b"\r\n\xef\xbb\xbf" + row + b"\r\n")
    assert ds.load_dataset(path).lines == [1, 2]
