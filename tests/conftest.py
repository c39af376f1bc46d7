"""Shared fixtures: a tiny random Llama with a real (small) BPE tokenizer, built in seconds.

Real things, small (TRL's own tests do the same): the engine, chat and export code paths run end
to end on this model exactly as on a real one, only faster.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from desktop_ft import resources

REPO = Path(__file__).resolve().parent.parent
SAMPLE = resources.sample_dataset()

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_model(folder: Path) -> Path:
    """Train a 512-token BPE tokenizer on the sample data and save a 2-layer random Llama beside it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = []
    for line in SAMPLE.read_text(encoding="utf-8").splitlines():
        for m in json.loads(line)["messages"]:
            texts.append(m["content"])
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHATML
    fast.save_pretrained(folder)

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a folder holding a tiny random Llama and its tokenizer (config, safetensors, chat template)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def chat_jsonl(tmp_path: Path) -> Path:
    """A small, learnable chat dataset: 24 rows copied from the sample data."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:24]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs never land in the user's real runs folder during tests; the model cache stays shared."""
    monkeypatch.setenv("DESKTOP_FT_RUNS", str(tmp_path_factory.getbasetemp() / "runs"))


@pytest.fixture()
def make_config(tiny_model: Path, chat_jsonl: Path, tmp_path: Path):
    """``make_config(**training)`` → a RunConfig that trains the tiny model fast on the CPU into tmp/run."""

    def make(data: Path | None = None, out: Path | None = None, **training):
        return tiny_config(tiny_model, data or chat_jsonl, out or tmp_path / "run", **training)

    return make


def tiny_config(model: Path, data: Path, out: Path, **training):
    from desktop_ft.core.config import RunConfig

    values = {"model.name": str(model), "data.path": str(data), "output.output_dir": str(out),
              "training.max_steps": 4, "training.batch_size": 4, "training.learning_rate": 5e-3,
              "training.max_length": 128, "training.save_steps": 2, "training.eval_steps": 2,
              "data.validation_fraction": 0.2}
    values.update({f"training.{k}": v for k, v in training.items()})
    return RunConfig().replace(values)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A finished 4-step LoRA run of the tiny model, with checkpoints at steps 2 and 4 (one per test module:
    some tests write probe results into it)."""
    from desktop_ft.core.engine import train

    folder = tmp_path_factory.mktemp("chat-run")
    data = folder / "chat.jsonl"
    data.write_text("\n".join(SAMPLE.read_text(encoding="utf-8").splitlines()[:24]) + "\n", encoding="utf-8")
    outcome = train(tiny_config(tiny_model, data, folder / "run"))
    assert outcome.state == "finished"
    return folder / "run"
