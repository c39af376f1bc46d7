"""The window and the CLI make the same config from the same choices, and the Method page shows
only the settings the registry says apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from desktop_ft.cli import build_parser
from desktop_ft.cli.train import build_config
from desktop_ft.core.config import RunConfig
from desktop_ft.core.methods import PRESETS, recommended_learning_rate
from desktop_ft.ui.session import Session
from desktop_ft.ui.wizard.method_page import MethodPage

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.mark.parametrize("method,data", [("full", "openai_messages.jsonl"), ("lora", "openai_messages.jsonl"),
                                         ("prompt_tuning", "openai_messages.jsonl"), ("full", "preference.jsonl"),
                                         ("qlora", "preference.jsonl")])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_window_and_cli_give_the_same_config(qtbot, method, data, preset):
    path = str(DATA / data)
    session = Session(RunConfig().replace({"data.path": path}))
    page = MethodPage(session)
    qtbot.addWidget(page)
    page.cards[method].clicked.emit(method)  # what a click on the method's card sends
    with qtbot.waitSignal(page.presetApplied, timeout=20000):
        page.preset_buttons[preset].click()
    window = session.config
    cli, _ = build_config(build_parser().parse_args(["train", "--data", path, "--method", method,
                                                     "--preset", preset]))
    assert window.to_dict() == cli.to_dict()
    task = "dpo" if data == "preference.jsonl" else "sft"
    assert window.training.learning_rate == recommended_learning_rate(method, task)


def test_full_quick_test_trains_at_the_full_learning_rate(qtbot):
    session = Session()
    page = MethodPage(session)
    qtbot.addWidget(page)
    page.cards["full"].clicked.emit("full")
    with qtbot.waitSignal(page.presetApplied, timeout=20000):
        page.preset_buttons["quick_test"].click()
    assert session.config.training.learning_rate == 2e-5  # not LoRA's 2e-4


def _shown(form, key):
    return not form.cells[key][2].isHidden()


def test_method_page_shows_only_the_settings_that_apply(qtbot):
    session = Session()
    page = MethodPage(session)
    qtbot.addWidget(page)
    page.show()
    session.update({"method.method": "lora"})
    assert _shown(page.form, "method.lora_rank") and _shown(page.advanced_form, "method.target_modules")
    for method in ("full", "prompt_tuning", "prefix_tuning"):
        session.update({"method.method": method})
        assert not _shown(page.form, "method.lora_rank") and not _shown(page.form, "method.lora_alpha")
        assert not _shown(page.advanced_form, "method.target_modules")
        assert _shown(page.form, "training.learning_rate")
    session.update({"method.method": "prompt_tuning"})
    assert _shown(page.specific, "method.prompt_tuning.num_virtual_tokens") and page.specific_card.isVisibleTo(page)
    assert not _shown(page.specific, "method.qlora.quant_type")
    session.update({"method.method": "qlora", "method.task": "dpo"})
    assert _shown(page.specific, "method.qlora.quant_type") and _shown(page.specific, "method.dpo.beta")
    assert _shown(page.form, "method.lora_rank") and not _shown(page.advanced_form, "method.assistant_only_loss")
    session.update({"method.method": "full", "method.task": "sft"})
    assert not page.specific_card.isVisibleTo(page) and _shown(page.advanced_form, "method.assistant_only_loss")
