"""One test or two per wizard page, on the tiny model and real files."""

import dataclasses
import typing
from pathlib import Path

from desktop_ft.core.config import section_types
from desktop_ft.ui.session import Session
from desktop_ft.ui.wizard.dataset_page import DatasetPage
from desktop_ft.ui.wizard.estimate_page import EstimatePage
from desktop_ft.ui.wizard.method_page import NOT_HERE, MethodPage
from desktop_ft.ui.wizard.model_page import ModelPage


def test_model_page_describes_a_local_folder(qtbot, qsettings, tiny_model):
    page = ModelPage(Session(), qsettings)
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.infoReady, timeout=60000) as blocker:
        page.choose(str(tiny_model))
    info = blocker.args[0]
    assert "llama" in info["architecture"].lower()
    assert info["has_chat_template"] is True
    assert page.session.config.model.name == str(tiny_model)


def test_model_page_explains_a_wrong_folder(qtbot, qsettings, tmp_path):
    page = ModelPage(Session(), qsettings)
    qtbot.addWidget(page)
    page.choose(str(tmp_path))
    assert not page.error.isHidden()
    assert "config.json" in page.error.text()
    assert page.session.config.model.name == "default"


def test_dataset_page_shows_rows_problems_lengths_and_the_learned_part(qtbot, qsettings, tiny_model, chat_jsonl):
    lines = chat_jsonl.read_text().splitlines()
    lines.insert(2, '{"messages": "oops"}')
    lines.insert(4, "not json")
    chat_jsonl.write_text("\n".join(lines) + "\n")
    session = Session()
    session.update({"model.name": str(tiny_model), "training.max_length": 64})
    page = DatasetPage(session, qsettings)
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.inspected, timeout=60000):
        page.choose(str(chat_jsonl))
    assert page.preview.rowCount() == 24
    model = page.problem_list.model()
    assert model.rowCount() == 2
    assert model.index(0, 0).data().startswith("line 3:")
    assert model.index(1, 0).data().startswith("line 5:")
    page.problem_list.setCurrentIndex(model.index(1, 0))
    assert page.problem_row.toPlainText().endswith("not json")
    page.problem_list.setCurrentIndex(model.index(0, 0))
    assert '"oops"' in page.problem_row.toPlainText()
    assert "would be truncated" in page.length_text.text() or "No row would be truncated" in page.length_text.text()
    html = page.example.toHtml()
    assert "Step 1" in html and "counts toward the loss" in html
    # the truncation count follows the max length without reloading
    session.update({"training.max_length": 4096})
    assert "No row would be truncated" in page.length_text.text()


def test_method_page_generates_every_field_and_explains_bad_values(qtbot):
    session = Session()
    page = MethodPage(session)
    qtbot.addWidget(page)
    leaves: dict[str, dataclasses.Field] = {}

    def walk(prefix, typ):
        hints = typing.get_type_hints(typ)
        for f in dataclasses.fields(typ):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(f"{prefix}.{f.name}", hints[f.name])
            else:
                leaves[f"{prefix}.{f.name}"] = f

    for s, t in section_types().items():
        walk(s, t)
    every = set(leaves) - NOT_HERE
    shown = set(page.form.editors) | set(page.advanced_form.editors) | set(page.specific.editors)
    assert shown == every
    advanced = {k for k in every if k.count(".") == 1 and leaves[k].metadata.get("advanced")}
    assert set(page.advanced_form.editors) == advanced
    for editor in page.advanced_form.editors.values():
        assert editor.widget.toolTip()
    rank = page.form.editors["method.lora_rank"]
    rank.widget.setValue(32)
    assert session.config.method.lora_rank == 32
    lr = page.form.editors["training.learning_rate"]
    lr.widget.setText("5")
    lr.widget.editingFinished.emit()
    assert not page.form.errors["training.learning_rate"].isHidden()
    assert "maximum" in page.form.errors["training.learning_rate"].text()
    assert session.config.training.learning_rate == 2e-4
    lr.widget.setText("1e-4")
    lr.widget.editingFinished.emit()
    assert session.config.training.learning_rate == 1e-4
    assert page.form.errors["training.learning_rate"].isHidden()


def test_estimate_page_follows_the_config(qtbot):
    session = Session()
    page = EstimatePage(session)
    qtbot.addWidget(page)
    with qtbot.waitSignal(page.estimated, timeout=60000):
        pass
    first = page.result.total_bytes
    with qtbot.waitSignal(page.estimated, timeout=60000):
        session.update({"training.batch_size": 32})
    assert page.result.total_bytes > first


def test_many_problems_show_at_once_and_a_click_reads_one_line_not_the_file(qtbot, qsettings, tmp_path,
                                                                             monkeypatch):
    """20,000 broken lines among good ones: the list is a model (nothing built per problem), and clicking one
    seeks to its line, found by the worker, instead of reading the file from the top in the GUI thread."""
    import time

    from desktop_ft.core import datasets as core_datasets

    good = '{"messages": [{"role": "user", "content": "Hi %d"}, {"role": "assistant", "content": "Hello."}]}'
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(good % i if i % 2 else f"not json {i}" for i in range(40_000)) + "\n")
    session = Session()
    page = DatasetPage(session, qsettings)
    qtbot.addWidget(page)
    page.show()
    with qtbot.waitSignal(page.inspected, timeout=120000):
        page.choose(str(path))
    model = page.problem_list.model()
    assert model.rowCount() == 20_000
    opened = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    started = time.perf_counter()
    page.problem_list.setCurrentIndex(model.index(19_999, 0))
    assert time.perf_counter() - started < 0.25
    assert page.problem_row.toPlainText() == "line 39999: is not valid JSON (Expecting value at column 1).\n\n" \
        "not json 39998"
    assert opened == [path]  # one seek and one line read
    assert core_datasets.line_offsets(path, [39_999]) == {39_999: sum(len(good % i) + 1 if i % 2 else
                                                                       len(f"not json {i}") + 1
                                                                       for i in range(39_998))}
