"""Files read a chunk at a time from the disk (a JSON list an element at a time, a text document a
line at a time): the rows, the lines they are named by and the errors are exactly what reading the
whole text gives, however the file falls into chunks."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from desktop_ft.core.datasets import _read
from desktop_ft.core.errors import DatasetError


def _rows(source: _read.Source) -> list:
    return [(item.line, item.message) if isinstance(item, _read.RowError) else item for item in source.records]


def _whole(path: Path) -> list:
    return _rows(_read.read_json(path, path.read_bytes()))


def _streamed(path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, keep: int) -> list:
    monkeypatch.setattr(_read, "SCAN_BUFFER", chunk)
    monkeypatch.setattr(_read, "SCAN_KEEP", keep)
    return _rows(_read.read_json_list(path))


ROW = {"messages": [{"role": "user", "content": "Wie geht's? 😀 \"quoted\" \\ back"},
                    {"role": "assistant", "content": "Gut.\nZwei Zeilen."}], "n": 12345, "x": [1.5, -2e-3, None]}
TEXTS = {
    "pretty": json.dumps([ROW, {"prompt": "a", "completion": "b"}] * 5, indent=2, ensure_ascii=False),
    "one line": json.dumps([ROW] * 7, ensure_ascii=False),
    "bom and blank lines": "\ufeff\n\n  [\n" + ",\n\n".join(json.dumps(ROW) for _ in range(4)) + "\n]\n\n",
    "numbers at the end of a chunk": "[" + ", ".join(str(10 ** 12 + i) for i in range(50)) + "]",
    "empty": "[ ]",
    "broken element": json.dumps([ROW] * 3, indent=1)[:-40] + "oops}, " + json.dumps(ROW) + "]",
    "trailing comma": "[\n" + json.dumps(ROW) + ",\n" + json.dumps(ROW) + ",\n]",
    "missing comma": "[\n" + json.dumps(ROW) + "\n" + json.dumps(ROW) + "]",
    "cut off": json.dumps([ROW] * 4, indent=2)[:-300],
    "single quotes": "[\n" + json.dumps(ROW) + ",\n{'prompt': 'a'}\n]",
    "nested lists": json.dumps([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]] * 6),
}


@pytest.mark.parametrize("name", sorted(TEXTS))
@pytest.mark.parametrize("chunk,keep", [(7, 0), (64, 16), (1000, 100), (1 << 20, 1 << 20)])
def test_a_streamed_json_list_reads_as_the_whole_text_does(tmp_path, monkeypatch, name, chunk, keep):
    path = tmp_path / "data.json"
    path.write_text(TEXTS[name], encoding="utf-8")
    assert _streamed(path, monkeypatch, chunk, keep) == _whole(path)


def test_random_splits_of_a_long_list(tmp_path, monkeypatch):
    rng = random.Random(3)
    rows = [{"prompt": "p" * rng.randint(0, 300), "completion": "ü" * rng.randint(1, 50), "i": i} for i in range(300)]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(rows, indent=rng.choice([None, 1, 4]), ensure_ascii=False), encoding="utf-8")
    whole = _whole(path)
    assert [r["i"] for _, r in whole] == list(range(300))
    for _ in range(5):
        assert _streamed(path, monkeypatch, rng.randint(5, 3000), rng.randint(0, 5000)) == whole


def test_data_after_the_list_ends_is_refused_with_its_line(tmp_path, monkeypatch):
    path = tmp_path / "two.json"
    path.write_text("[\n" + json.dumps(ROW) + "\n]\n[\n" + json.dumps(ROW) + "\n]\n", encoding="utf-8")
    monkeypatch.setattr(_read, "SCAN_BUFFER", 16)
    with pytest.raises(DatasetError) as streamed:
        list(_read.read_json_list(path).records)
    with pytest.raises(DatasetError) as whole:
        list(_read.read_json(path, path.read_bytes()).records)
    assert str(streamed.value) == str(whole.value) and streamed.value.line == 4


def test_a_bad_byte_names_its_line_as_a_whole_read_does(tmp_path, monkeypatch):
    path = tmp_path / "latin1.json"
    rows = b",\n".join(json.dumps(ROW).encode() for _ in range(5))
    path.write_bytes(b"[\n" + rows + b",\n{\"prompt\": \"caf\xe9\"}\n]")  # Latin-1, not UTF-8
    monkeypatch.setattr(_read, "SCAN_BUFFER", 50)
    with pytest.raises(DatasetError) as streamed:
        list(_read.read_json_list(path).records)
    with pytest.raises(DatasetError) as whole:
        _read.decode_text(path, path.read_bytes())
    assert str(streamed.value) == str(whole.value) and streamed.value.line == 7


def test_open_source_streams_a_top_level_list_and_reads_small_objects_whole(tmp_path):
    listed = tmp_path / "alpaca.json"
    listed.write_text(json.dumps([{"instruction": "a", "output": "b"}] * 3), encoding="utf-8")
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"data": [{"instruction": "a", "output": "b"}] * 3}), encoding="utf-8")
    calls = []
    original = _read.read_json
    _read.read_json = lambda path, raw: calls.append(path) or original(path, raw)
    try:
        assert len(list(_read.open_source(listed)[1].records)) == 3 and calls == []  # streamed: never read whole
        assert len(list(_read.open_source(keyed)[1].records)) == 3 and calls == [keyed]
    finally:
        _read.read_json = original


PARA = "A paragraph of prose, with words.\nIts second line."
DOCS = {
    "unix": "\n\n".join([PARA] * 40) + "\n",
    "windows": "\r\n\r\n".join([PARA.replace("\n", "\r\n")] * 40),
    "old mac": "\r\r".join([PARA.replace("\n", "\r")] * 40) + "\r",
    "one huge line": "word " * 3000,
    "blank lines only": "\n\n\n \n",
    "markdown": "# Title\n\n" + "\n\n".join(f"## Part {i}\n\n{PARA} ü {i}" for i in range(30)),
    "bom, mixed ends": "\ufeff" + PARA + "\r\n\n" + PARA + "\r\r\n" + PARA,
}


@pytest.mark.parametrize("name", sorted(DOCS))
@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
def test_a_streamed_text_reads_as_the_whole_text_does(tmp_path, monkeypatch, name, chunk):
    path = tmp_path / ("doc.md" if name == "markdown" else "doc.txt")
    path.write_bytes(DOCS[name].encode("utf-8"))
    markdown = name == "markdown"
    whole = _rows(_read.read_text(path, path.read_bytes(), markdown=markdown))
    monkeypatch.setattr(_read, "SCAN_BUFFER", chunk)
    assert _rows(_read.read_text(path, markdown=markdown)) == whole
    assert whole or name == "blank lines only"


def test_open_source_streams_a_text_document(tmp_path, monkeypatch):
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join([PARA] * 10), encoding="utf-8")
    monkeypatch.setattr(_read, "_read_bytes", lambda p: pytest.fail("read whole"))
    rows = list(_read.open_source(path)[1].records)
    assert len(rows) == 1 and rows[0][0] == 1 and rows[0][1]["text"].count(PARA) == 10


@pytest.mark.parametrize("data", [b"\xc2", b"ab\ncd\xc3", b"ok\n\xe2\x82", b"[1,\n2,\xff]", b"x\n" * 40 + b"\xe9\n"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 20])
def test_a_bad_or_cut_off_byte_is_named_as_a_whole_read_names_it(tmp_path, monkeypatch, data, chunk):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as whole:
        _read.decode_text(path, data)
    monkeypatch.setattr(_read, "SCAN_BUFFER", chunk)
    with pytest.raises(DatasetError) as streamed:
        list(_read.read_text(path).records)
    assert (str(streamed.value), streamed.value.line) == (str(whole.value), whole.value.line)


# -- a big JSON object holding its rows in one list ---------------------------------------------------

def _object_streamed(path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, keep: int) -> tuple[list, list] | None:
    monkeypatch.setattr(_read, "SCAN_BUFFER", chunk)
    monkeypatch.setattr(_read, "SCAN_KEEP", keep)
    source = _read.read_big_json_object(path)
    return None if source is None else (_rows(source), source.notes)


def _object_whole(path: Path) -> tuple[list, list]:
    source = _read.read_json(path, path.read_bytes())
    return _rows(source), source.notes


CHATS = [ROW, {"prompt": "a", "completion": "b"}] * 6
KEYED = {
    "version first": json.dumps({"version": 2, "data": CHATS}, indent=2, ensure_ascii=False),
    "list first, more after": json.dumps({"data": CHATS, "meta": {"source": "x", "n": [1, 2, {"deep": None}]},
                                          "note": "done"}, ensure_ascii=False),
    "train wins over test": json.dumps({"test": CHATS[:3], "train": CHATS}, indent=1),
    "rows beside a list of numbers": json.dumps({"scores": list(range(40)), "chats": CHATS}),
    "the longer list, past the first 20": json.dumps({"short": ["x"] * 25, "long": ["y"] * 30, "empty": []}),
    "bom and blank lines": "\ufeff\n\n { \"rows\" :\n\n" + json.dumps(CHATS, indent=3) + "\n }\n\n",
    "an empty list beside the rows": json.dumps({"extra": [], "items": CHATS}),
}


@pytest.mark.parametrize("name", sorted(KEYED))
@pytest.mark.parametrize("chunk,keep", [(7, 0), (64, 16), (1000, 100), (1 << 20, 1 << 20)])
def test_a_big_object_holding_its_rows_reads_as_the_whole_text_does(tmp_path, monkeypatch, name, chunk, keep):
    path = tmp_path / "data.json"
    path.write_text(KEYED[name], encoding="utf-8")
    whole = _object_whole(path)
    assert whole[0] and whole[1][-1].startswith("rows read from the list under")
    assert _object_streamed(path, monkeypatch, chunk, keep) == whole


WHOLE_ONLY = {
    "columns as lists": json.dumps({"prompt": ["a", "b", "c"], "completion": ["x", "y", "z"]}),
    "pandas split": json.dumps({"columns": ["prompt", "completion"], "data": [["a", "x"], ["b", "y"]]}),
    "keyed by id": json.dumps({"r1": {"prompt": "a", "completion": "x"}, "r2": {"prompt": "b", "completion": "y"}}),
    "one row": json.dumps(ROW),
    "a broken row": json.dumps({"data": CHATS}, indent=1)[:-60] + "oops}]}",
    "two objects": json.dumps({"data": CHATS}) + "\n" + json.dumps({"data": CHATS}),
    "a duplicate key": '{"data": [{"prompt": "a", "completion": "b"}], "data": []}',
    "not an object inside": '{"data": [{"prompt": "a", "completion": "b"}], 5: 1}',
}


@pytest.mark.parametrize("name", sorted(WHOLE_ONLY))
def test_other_object_layouts_are_left_to_the_whole_read(tmp_path, monkeypatch, name):
    """Their rows need the whole object (or the whole read names the syntax error): no rows are
    given from the disk, so nothing reads differently."""
    path = tmp_path / "data.json"
    path.write_text(WHOLE_ONLY[name], encoding="utf-8")
    assert _object_streamed(path, monkeypatch, 16, 0) is None


def test_open_source_reads_a_big_keyed_object_from_the_disk(tmp_path, monkeypatch):
    path = tmp_path / "squad-like.json"
    path.write_text(json.dumps({"version": "1.1", "data": [{"instruction": f"q{i}", "output": "a"}
                                                         for i in range(50)]}, indent=2), encoding="utf-8")
    columnar = tmp_path / "columns.json"
    columnar.write_text(json.dumps({"prompt": ["a", "b"], "completion": ["x", "y"]}), encoding="utf-8")
    whole = _rows(_read.open_source(path)[1])  # small: read whole
    monkeypatch.setattr(_read, "STREAM_OBJECT_BYTES", 0)
    read_whole = []
    original = _read.read_json
    monkeypatch.setattr(_read, "read_json", lambda p, raw: read_whole.append(p) or original(p, raw))
    assert _rows(_read.open_source(path)[1]) == whole and read_whole == []
    assert len(_rows(_read.open_source(columnar)[1])) == 2 and read_whole == [columnar]


def test_a_big_keyed_object_is_read_in_bounded_memory(tmp_path, monkeypatch):
    import tracemalloc

    path = tmp_path / "big.json"
    row = json.dumps({"instruction": "word " * 60, "output": "answer " * 40})
    with path.open("w", encoding="utf-8") as f:
        f.write('{"version": 1, "data": [\n')
        f.write(",\n".join(row for _ in range(40_000)))
        f.write('\n], "end": true}\n')
    size = path.stat().st_size
    assert size > 20 << 20
    monkeypatch.setattr(_read, "STREAM_OBJECT_BYTES", 0)
    tracemalloc.start()
    try:
        count = sum(1 for _ in _read.open_source(path)[1].records)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 40_000
    assert peak < size / 3, f"peak {peak / 2**20:.1f} MiB reading a {size / 2**20:.0f} MiB file"


# -- Excel's 'Unicode text': a UTF-16 CSV/TSV ---------------------------------------------------------

@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
@pytest.mark.parametrize("chunk", [3, 64, 1 << 20])
def test_a_utf16_table_is_read_from_the_disk_with_its_lines(tmp_path, monkeypatch, codec, chunk):
    text = "prompt\tcompletion\r\n" + "".join(f"Café {i} 😀\t\"two\r\nlines\" {i}\r\n" for i in range(40))
    path = tmp_path / "excel.tsv"
    path.write_bytes((b"\xfe\xff" if codec == "utf-16-be" else b"") + text.encode(codec))
    monkeypatch.setattr(_read, "SCAN_BUFFER", chunk)
    monkeypatch.setattr(_read, "_read_bytes", lambda p: pytest.fail("read whole"))
    source = _read.open_source(path)[1]
    rows = _rows(source)
    assert source.columns == ["prompt", "completion"]
    assert rows[0] == (2, {"prompt": "Café 0 😀", "completion": "two\nlines 0"})
    assert [line for line, _ in rows] == list(range(2, 82, 2)) and rows[-1][1]["prompt"] == "Café 39 😀"


def test_a_broken_utf16_table_says_so(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("prompt,completion\r\na,b\r\n".encode("utf-16") + b"\x00\xd8")  # half a surrogate pair
    with pytest.raises(DatasetError, match="not valid UTF-16"):
        list(_read.open_source(path)[1].records)
