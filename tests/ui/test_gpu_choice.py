"""'Use N GPUs' appears only where several GPUs are found (a faked hardware report here), writes the
distributed section, and the Train view's summary shows it."""

from __future__ import annotations

from desktop_ft.core.hardware import Gpu, Hardware
from desktop_ft.ui.session import Session
from desktop_ft.ui.training_view import TrainingView
from desktop_ft.ui.wizard.estimate_page import EstimatePage


def machine(gpus: int) -> Hardware:
    card = Gpu("NVIDIA H100", 80 * 1024**3, 80 * 1024**3, (9, 0))
    return Hardware(gpus=[card] * gpus, bf16=True, bitsandbytes=True, cpu_cores=16)


def test_several_gpus_offer_use_n_gpus_and_the_train_view_shows_it(qtbot, qsettings, tmp_path) -> None:
    session = Session()
    page = EstimatePage(session)
    qtbot.addWidget(page)
    page._on_hardware(machine(4))
    choice = page.gpu_choice
    assert not choice.isHidden() and choice.use.text() == "Use 4 GPUs"
    assert not choice.use.isChecked() and not choice.strategy.isEnabled()

    choice.use.setChecked(True)
    assert session.config.distributed.nproc_per_node == 4 and session.config.distributed.strategy == "ddp"
    choice.strategy.setCurrentIndex(choice.strategy.findData("fsdp"))
    assert session.config.distributed.strategy == "fsdp"
    assert "split over the GPUs" in choice.sentence.text()

    view = TrainingView(session)
    qtbot.addWidget(view)
    view._on_config_changed(session.config)
    assert "<b>GPUs</b> 4 × FSDP" in view.summary.text()

    # QLoRA's 4-bit weights cannot be sharded: said in place, nothing changed
    session.update({"method.method": "qlora", "distributed.strategy": "ddp"})
    choice.strategy.setCurrentIndex(choice.strategy.findData("zero3"))
    assert session.config.distributed.strategy == "ddp"
    assert not choice.error.isHidden() and "quantised" in choice.error.text()

    choice.use.setChecked(False)
    assert session.config.distributed.nproc_per_node == 1


def test_one_gpu_or_none_changes_nothing(qtbot, qsettings) -> None:
    for gpus in (0, 1):
        session = Session()
        page = EstimatePage(session)
        qtbot.addWidget(page)
        page._on_hardware(machine(gpus))
        assert page.gpu_choice.isHidden()
        view = TrainingView(session)
        qtbot.addWidget(view)
        view._on_config_changed(session.config)
        assert "GPUs" not in view.summary.text()
        assert session.config.distributed.nproc_per_node == 1
