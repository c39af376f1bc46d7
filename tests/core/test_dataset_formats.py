"""Every format and file type in tests/data is detected without configuration, and normalised to TRL's shapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_ft.core import datasets as ds
from desktop_ft.core.errors import DatasetError

DATA = Path(__file__).resolve().parents[1] / "data"

U = lambda c: {"role": "user", "content": c}  # noqa: E731
A = lambda c: {"role": "assistant", "content": c}  # noqa: E731
S = lambda c: {"role": "system", "content": c}  # noqa: E731

# file → (format, kind, source line of each kept row)
DETECTED = {
    "openai_messages.jsonl": ("messages", "conversation", [1, 2, 3]),
    "sharegpt.json": ("sharegpt", "conversation", [2, 18]),
    "alpaca.json": ("alpaca", "prompt_completion", [2, 7, 12]),
    "dolly.jsonl": ("dolly", "prompt_completion", [1, 2]),
    "question_answer.csv": ("question_answer", "prompt_completion", [2, 3, 5]),
    "query_response.tsv": ("query_response", "prompt_completion", [2, 3]),
    "prompt_completion.jsonl": ("prompt_completion", "prompt_completion", [1, 2]),
    "prompt_completion_chat.jsonl": ("prompt_completion_chat", "conversation", [1, 2]),
    "preference.jsonl": ("preference", "preference", [1, 2]),
    "preference_chat.jsonl": ("preference", "preference", [1]),
    "anthropic_hh.jsonl": ("anthropic_hh", "preference", [1, 2]),
    "sharegpt_preference.json": ("sharegpt_preference", "preference", [2, 18]),
    "text.jsonl": ("text", "text", [1, 2]),
    "plain.txt": ("text", "text", [1]),
    "notes.md": ("text", "text", [1, 5]),
    "wrapped_data.json": ("question_answer", "prompt_completion", [4, 8]),
    "alpaca.parquet": ("alpaca", "prompt_completion", [1, 2]),
}


@pytest.mark.parametrize("name", sorted(DETECTED))
def test_each_format_is_detected_without_configuration(name: str) -> None:
    fmt, kind, lines = DETECTED[name]
    data = ds.load_dataset(DATA / name)
    assert (data.format, data.kind, data.lines) == (fmt, kind, lines)
    assert len(data.rows) == len(lines)
    assert all(set(r) <= {"messages", "prompt", "completion", "chosen", "rejected", "text", "label"}
               for r in data.rows)


def test_sharegpt_roles_become_openai_roles_and_the_system_turn_is_kept() -> None:
    rows = ds.load_dataset(DATA / "sharegpt.json").rows
    assert rows[0] == {"messages": [S("You are terse."), U("Hi"), A("Hello.")]}


def test_alpaca_input_is_appended_to_the_instruction_only_when_present() -> None:
    rows = ds.load_dataset(DATA / "alpaca.json").rows
    assert rows[0] == {"prompt": "Give a synonym for happy.", "completion": "Joyful."}
    assert rows[1] == {"prompt": "Translate to French.\n\nGood morning", "completion": "Bonjour."}


def test_dolly_context_is_part_of_the_prompt() -> None:
    rows = ds.load_dataset(DATA / "dolly.jsonl").rows
    assert rows[0]["prompt"] == "When was the Eiffel Tower built?\n\nThe Eiffel Tower was built 1887-1889."
    assert rows[1] == {"prompt": "Name a primary colour.", "completion": "Red."}


def test_excel_csv_with_bom_crlf_quoted_comma_and_newline() -> None:
    data = ds.load_dataset(DATA / "question_answer.csv")
    assert data.columns == ["Question", "Answer"]  # no BOM glued to the first name
    assert data.fields == {"prompt": "Question", "completion": "Answer"}
    assert data.rows[0] == {"prompt": "Hello, who are you?", "completion": "I am a tutor."}
    assert data.rows[1]["completion"] == "Step 1: read.\nStep 2: think."
    assert data.rows[2]["completion"] == "4"


def test_preference_shapes_follow_trl() -> None:
    assert ds.load_dataset(DATA / "preference.jsonl").rows[1] == {"prompt": "2 + 2?", "chosen": "4", "rejected": "5"}
    ultra = ds.load_dataset(DATA / "preference_chat.jsonl").rows[0]
    assert ultra == {"prompt": [U("Tell me a joke")], "chosen": [A("Why did the chicken cross the road?")],
                     "rejected": [A("No.")]}


def test_llama_factory_sharegpt_preference_uses_conversations_as_the_prompt() -> None:
    row = ds.load_dataset(DATA / "sharegpt_preference.json").rows[1]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["chosen"] == [A("7 x 8 = 56, because 7 x 8 is 7 x 4 doubled: 28 x 2 = 56.")]
    assert row["rejected"][0]["role"] == "assistant"


def test_anthropic_hh_dialogues_are_split_into_the_shared_prompt_and_the_two_replies() -> None:
    row = ds.load_dataset(DATA / "anthropic_hh.jsonl").rows[0]
    assert row["prompt"] == [U("What is a cat?"), A("A small furry animal."), U("Do they purr?")]
    assert row["chosen"] == [A("Yes, when content.")] and row["rejected"] == [A("Go away.")]


def test_conversational_prompt_completion_becomes_a_conversation() -> None:
    rows = ds.load_dataset(DATA / "prompt_completion_chat.jsonl").rows
    assert rows[1] == {"messages": [S("Be polite"), U("Say no"), A("No, thank you")]}


def test_plain_text_is_cut_into_paragraph_chunks_and_markdown_at_headings() -> None:
    assert ds.load_dataset(DATA / "plain.txt").rows == [
        {"text": "First paragraph, line one.\nLine two.\n\nSecond paragraph.\n\nThird."}]
    assert ds.load_dataset(DATA / "notes.md").rows == [{"text": "# Cats\n\nCats purr."},
                                                        {"text": "## Dogs\n\nDogs bark.\nLoudly."}]


def test_long_text_is_chunked_without_losing_words(tmp_path: Path) -> None:
    paragraphs = [" ".join(f"w{p}_{i}" for i in range(60)) for p in range(100)]
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    data = ds.load_dataset(path)
    assert len(data.rows) > 10 and all(len(r["text"]) <= 2000 for r in data.rows)
    assert " ".join(r["text"] for r in data.rows).split() == " ".join(paragraphs).split()
    assert data.lines[0] == 1 and data.lines == sorted(data.lines)


def test_a_json_object_that_is_itself_one_row(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}')
    assert ds.load_dataset(path).rows == [{"messages": [U("Hi"), A("Yo")]}]


def test_columns_stored_as_lists(tmp_path: Path) -> None:
    path = tmp_path / "cols.json"
    path.write_text('{"prompt": ["a", "b"], "completion": ["c", "d"]}')
    assert ds.load_dataset(path).rows == [{"prompt": "a", "completion": "c"}, {"prompt": "b", "completion": "d"}]


def test_saved_dataset_dict_uses_its_train_split(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    train = Dataset.from_list([{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)])
    DatasetDict(train=train, test=train.select([0])).save_to_disk(str(tmp_path / "saved"))
    data = ds.load_dataset(tmp_path / "saved")
    assert (data.format, len(data.rows), data.unit) == ("question_answer", 3, "row")
    assert data.rows[2] == {"prompt": "q2", "completion": "a2"} and "train" in data.notes[0]


def test_a_hub_id_offline_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetError) as info:
        ds.load_dataset("someone/no-such-dataset-xyz")
    assert "Hugging Face Hub" in str(info.value) and "someone/no-such-dataset-xyz" in str(info.value)


def test_explicit_column_mapping_for_undetected_names() -> None:
    with pytest.raises(DatasetError, match="frage, antwort"):
        ds.load_dataset(DATA / "custom_columns.csv")
    for mapping in ({"prompt": "frage", "completion": "antwort"}, {"frage": "prompt", "antwort": "completion"}):
        data = ds.load_dataset(DATA / "custom_columns.csv", columns=mapping)
        assert data.kind == "prompt_completion" and data.rows[0] == {"prompt": "Wie alt?", "completion": "Zehn"}
    assert ds.parse_columns("prompt=frage, completion=antwort") == {"prompt": "frage", "completion": "antwort"}
    assert ds.parse_columns("{prompt: frage}") == {"prompt": "frage"}


def test_mapping_overrides_what_detection_would_pick(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ignored", "q": "Q", "a": "A"}\n')
    assert ds.load_dataset(path).kind == "text"
    mapped = ds.load_dataset(path, columns={"prompt": "q", "completion": "a"})
    assert mapped.rows == [{"prompt": "Q", "completion": "A"}]


def test_a_mapping_naming_a_missing_column_says_which_exist() -> None:
    with pytest.raises(DatasetError) as info:
        ds.load_dataset(DATA / "custom_columns.csv", columns={"prompt": "question"})
    assert "custom_columns.csv" in str(info.value) and "question" in str(info.value)
    assert "frage, antwort" in str(info.value)
    with pytest.raises(DatasetError, match="not a part"):
        ds.load_dataset(DATA / "custom_columns.csv", columns={"answer": "antwort2"})


def test_max_rows_counts_valid_rows() -> None:
    data = ds.load_dataset(DATA / "no_assistant.jsonl", max_rows=1)
    assert len(data.rows) == 1 and data.lines == [1]


@pytest.mark.parametrize("orient", ["records", "columns", "split", "index"])
def test_every_pandas_to_json_layout_is_read(orient: str, tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"instruction": ["Say hi", "Add 2+2", "x"], "input": ["", None, ""],
                          "output": ["hi", "4", None]})
    path = tmp_path / "frame.json"
    frame.to_json(path, orient=orient)
    data = ds.load_dataset(path)
    assert data.format == "alpaca"
    assert data.rows == [{"prompt": "Say hi", "completion": "hi"}, {"prompt": "Add 2+2", "completion": "4"}]
    assert len(data.errors) == 1 and "'output' is empty" in data.errors[0].message


def test_a_jsonl_file_that_holds_an_array_or_pretty_printed_objects(tmp_path: Path) -> None:
    import json

    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    (tmp_path / "array.jsonl").write_text(json.dumps(rows, indent=2))
    (tmp_path / "pretty.jsonl").write_text("\n".join(json.dumps(r, indent=2) for r in rows))
    assert ds.load_dataset(tmp_path / "array.jsonl").lines == [2, 6]
    assert ds.load_dataset(tmp_path / "pretty.jsonl").lines == [1, 5]
    (tmp_path / "first_broken.jsonl").write_text('{"prompt": "x",\n' + "\n".join(json.dumps(r) for r in rows))
    data = ds.load_dataset(tmp_path / "first_broken.jsonl")  # still one row per line: the rest survive
    assert data.lines == [2, 3] and data.errors[0].line == 1


def test_kto_labels_are_kept_and_sft_leaves_out_the_undesirable_rows(tmp_path: Path) -> None:
    path = tmp_path / "kto.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], '
                    '"label": true}\n{"prompt": "x", "completion": "y"}\n'
                    '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "no"}], '
                    '"label": false}\n')
    data = ds.load_dataset(path)
    assert [r["label"] for r in data.rows] == [True, False] and len(data.errors) == 1
    sft = list(ds.sft_recipe(data.kind, data.rows, None, assistant_only_loss=True).examples_of(data.rows))
    assert sft == [{"prompt": [U("hi")], "completion": [A("yo")]}]


def test_a_bare_list_of_messages_per_line(tmp_path: Path) -> None:
    path = tmp_path / "chats.jsonl"
    path.write_text('[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]\n'
                    '[{"role": "user", "content": "Hi"}]\n')
    data = ds.load_dataset(path)
    assert data.rows == [{"messages": [U("2+2?"), A("4")]}] and data.errors[0].line == 2


def test_preference_pairs_under_other_common_names(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "Joke?", "pos": "A cat walks into a bar.", "neg": "No."}\n')
    assert ds.load_dataset(path).rows == [{"prompt": "Joke?", "chosen": "A cat walks into a bar.", "rejected": "No."}]


def test_a_few_odd_rows_do_not_decide_the_format_for_all(tmp_path: Path) -> None:
    import json

    rows = [{"instruction": f"Say {i}", "output": str(i)} for i in range(9)]
    rows.insert(4, {"messages": [U("stray"), A("row")], "instruction": "x"})
    path = tmp_path / "mostly_alpaca.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = ds.load_dataset(path)
    assert data.format == "alpaca" and len(data.rows) == 9 and [e.line for e in data.errors] == [5]


def test_message_lists_in_csv_cells_as_json_or_as_pandas_wrote_them(tmp_path: Path) -> None:
    import pandas as pd

    messages = [{"role": "user", "content": 'Hi, "you"'}, {"role": "assistant", "content": "It's me"}]
    pd.DataFrame({"messages": [messages]}).to_csv(tmp_path / "repr.csv", index=False)  # Python repr in the cell
    (tmp_path / "json.csv").write_text('messages\n"[{""role"": ""user"", ""content"": ""Hi, \\""you\\""""}, '
                                       '{""role"": ""assistant"", ""content"": ""It\'s me""}]"\n')
    assert ds.load_dataset(tmp_path / "repr.csv").rows == [{"messages": messages}]
    assert ds.load_dataset(tmp_path / "json.csv").rows == [{"messages": messages}]


def test_arrow_files_from_the_datasets_cache_and_feather(tmp_path: Path) -> None:
    import pandas as pd
    from datasets import Dataset

    Dataset.from_list([{"question": "q", "answer": "a"}]).save_to_disk(str(tmp_path / "saved"))
    cache_file = next((tmp_path / "saved").glob("*.arrow"))
    assert ds.load_dataset(cache_file).rows == [{"prompt": "q", "completion": "a"}]
    pd.DataFrame({"text": ["doc one", "doc two"]}).to_feather(tmp_path / "t.feather")
    assert ds.load_dataset(tmp_path / "t.feather").rows == [{"text": "doc one"}, {"text": "doc two"}]


def test_alpaca_with_history_becomes_a_conversation(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    path.write_text('[{"instruction": "And 3 + 3?", "input": "", "output": "6", "system": "Be brief.", '
                    '"history": [["2 + 2?", "4"]]},\n {"instruction": "Hi", "input": "", "output": "Hello", '
                    '"history": []}]')
    data = ds.load_dataset(path)
    assert (data.format, data.kind) == ("alpaca_history", "conversation")
    assert data.rows[0] == {"messages": [S("Be brief."), U("2 + 2?"), A("4"), U("And 3 + 3?"), A("6")]}
    assert data.rows[1] == {"messages": [U("Hi"), A("Hello")]}
