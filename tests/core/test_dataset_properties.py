"""Whatever a file holds, loading it ends in rows or in our DatasetError: never another exception."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop_ft.core import datasets as ds
from desktop_ft.core.errors import DatasetError

DATA = Path(__file__).resolve().parents[1] / "data"
SUFFIXES = [".jsonl", ".json", ".csv", ".tsv", ".txt", ".md", ".parquet", ".arrow", ".dat"]
FIXTURES = sorted(p.name for p in DATA.iterdir() if p.is_file())
SHAPES = {"conversation": {"messages"}, "prompt_completion": {"prompt", "completion"},
          "preference": {"prompt", "chosen", "rejected"}, "text": {"text"}}
#: DFT_HYPOTHESIS_EXAMPLES=5000 for a long hunt; the default keeps the suite fast
FAST = settings(max_examples=int(os.environ.get("DFT_HYPOTHESIS_EXAMPLES", "120")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

names = st.sampled_from(["messages", "conversations", "prompt", "completion", "chosen", "rejected", "text",
                         "instruction", "input", "output", "question", "answer", "response", "context", "system",
                         "role", "content", "from", "value", "label", "x"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) |
    st.text(max_size=20) | st.sampled_from(["user", "assistant", "human", "gpt", "system", "robot",
                                            "\n\nHuman: hi\n\nAssistant: yo", "[{\"role\": 1}]", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
    max_leaves=20,
)


def _load(data: bytes, suffix: str, columns: dict | None = None) -> ds.LoadedDataset | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(data)
        try:
            loaded = ds.load_dataset(path, columns=columns)
        except DatasetError as exc:
            assert str(exc)  # one readable sentence
            return None
    _check(loaded)
    return loaded


def _check(loaded: ds.LoadedDataset) -> None:
    assert loaded.rows and loaded.kind in ds.KINDS
    assert len(loaded.lines) == len(loaded.rows)
    for row in loaded.rows:
        assert SHAPES[loaded.kind] <= set(row)
    for err in loaded.errors:
        assert err.line >= 1 and err.message


@FAST
@given(st.binary(max_size=400), st.sampled_from(SUFFIXES))
def test_random_bytes_never_escape_as_anything_but_a_dataset_error(data: bytes, suffix: str) -> None:
    _load(data, suffix)


@FAST
@given(st.sampled_from(FIXTURES), st.data())
def test_truncated_files_keep_the_rows_before_the_cut(name: str, draw: st.DataObject) -> None:
    raw = (DATA / name).read_bytes()
    cut = draw.draw(st.integers(min_value=0, max_value=len(raw)))
    loaded = _load(raw[:cut], Path(name).suffix)
    if name.endswith(".jsonl"):  # one row per line: every complete good line before the cut survives
        try:
            full = ds.load_dataset(DATA / name).lines
        except DatasetError:
            full = []
        before = [line for line in full if line <= raw[:cut].count(b"\n")]
        assert (loaded.lines if loaded else [])[:len(before)] == before


@FAST
@given(st.lists(json_values, max_size=6), st.sampled_from([".jsonl", ".json"]))
def test_odd_but_valid_json_never_escapes(values: list, suffix: str) -> None:
    if suffix == ".jsonl":
        data = "\n".join(json.dumps(v) for v in values).encode()
    else:
        data = json.dumps(values if len(values) != 1 else values[0], indent=1).encode()
    _load(data, suffix)


@FAST
@given(st.lists(st.dictionaries(names, json_values, min_size=1, max_size=5), min_size=1, max_size=5),
       st.one_of(st.none(), st.dictionaries(names, names, max_size=2)))
def test_odd_records_and_mappings_never_escape(records: list, columns: dict | None) -> None:
    _load("\n".join(json.dumps(r) for r in records).encode(), ".jsonl", columns)


@FAST
@given(st.lists(st.lists(st.text(alphabet="ab,;\"\t\r\n é", max_size=8), min_size=1, max_size=4), max_size=5))
def test_odd_csv_never_escapes(table: list) -> None:
    text = "prompt,completion\n" + "\n".join(",".join(row) for row in table)
    _load(text.encode(), ".csv")
