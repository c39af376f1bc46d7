"""Every method and task is a real path: each trains the tiny model for a few CPU steps and learns.

The toy tasks are chosen so a 2-layer random model can learn them in a handful of steps: every
answer is the same sentence (SFT, pre-training), and the chosen answer is always that sentence
while the rejected one is always another (DPO, KTO, ORPO).
"""

import dataclasses
import json
from pathlib import Path

import pytest

from desktop_ft import resources
from desktop_ft.core import config as config_module
from desktop_ft.core import methods, presets, trainers
from desktop_ft.core.config import RunConfig, all_dotted_keys, field_info, load_config, save_config, validate
from desktop_ft.core.engine import apply_rope_scaling, train
from desktop_ft.core.errors import ConfigError, UserError
from desktop_ft.core.events import StepLogged
from desktop_ft.core.methods import METHODS, PRESETS, TASKS, warnings_for
from desktop_ft.core.runs import RunFolder

REPO = Path(__file__).resolve().parents[2]
SAMPLE = resources.sample_dataset()
ANSWER = "One, two, three."


def _questions(n: int = 16) -> list[str]:
    return [json.loads(line)["messages"][0]["content"] for line in SAMPLE.read_text().splitlines()[:n]]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def toy_chat(tmp_path: Path) -> Path:
    return _write(tmp_path / "toy_chat.jsonl", [{"messages": [{"role": "user", "content": q},
                                                             {"role": "assistant", "content": ANSWER}]}
                                               for q in _questions()])


@pytest.fixture()
def toy_preference(tmp_path: Path) -> Path:
    return _write(tmp_path / "toy_pref.jsonl", [{"prompt": q, "chosen": ANSWER, "rejected": "I do not know."}
                                               for q in _questions()])


@pytest.fixture()
def toy_text(tmp_path: Path) -> Path:
    return _write(tmp_path / "toy_text.jsonl", [{"text": f"{q} {ANSWER}"} for q in _questions()])


def _config(tiny_model: Path, data: Path, out: Path, method: str, task: str = "auto", **extra) -> RunConfig:
    values = {"model.name": str(tiny_model), "data.path": str(data), "output.output_dir": str(out),
              "method.method": method, "method.task": task, "training.max_steps": 6, "training.batch_size": 4,
              "training.max_length": 64, "training.warmup_ratio": 0.0, "training.lr_scheduler": "constant",
              "training.save_steps": 100, "data.validation_fraction": 0.0,
              "training.learning_rate": {"full": 1e-3, "prompt_tuning": 1e-1, "prefix_tuning": 5e-2}.get(method, 1e-2)}
    values.update(extra)
    return RunConfig().replace(values)


def _losses(events) -> list[float]:
    return [e.loss for e in events if isinstance(e, StepLogged)]


# -- the registry ------------------------------------------------------------------------------------

def test_registry_names_match_the_config_choices_and_sections() -> None:
    assert {"lora", "qlora", "full", "dora", "lora_8bit", "prompt_tuning", "prefix_tuning"} <= set(METHODS)
    assert set(TASKS) == {"sft", "dpo", "orpo", "kto", "pretrain"}
    assert field_info("method.method").metadata["choices"] == list(METHODS)
    assert set(field_info("method.task").metadata["choices"]) == {"auto", *TASKS}
    keys = set(all_dotted_keys())
    for spec in [*METHODS.values(), *TASKS.values()]:
        assert len(spec.sentence) > 30 and spec.title, spec.name
        assert set(spec.keys) <= keys, spec.name  # the wizard can show every key a method lists
        if spec.section:
            section = getattr(RunConfig().method, spec.section)
            assert dataclasses.is_dataclass(section), spec.name
            assert any(k.startswith(f"method.{spec.section}.") for k in spec.keys), spec.name
            for f in dataclasses.fields(section):
                assert len(f.metadata["help"]) > 15, f"{spec.name}.{f.name}"
    assert set(trainers.TRAINER_BUILDERS) == set(TASKS)  # every task can be built
    adapters = {spec.adapter for spec in METHODS.values()} - {None}
    assert adapters == set(trainers.PEFT_BUILDERS)


def test_unknown_method_and_task_names_say_the_closest_valid_one() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'qlora'"):
        methods.method_spec("qlorra")
    with pytest.raises(ConfigError, match="Did you mean 'dpo'"):
        methods.resolve_task("dpp", "preference")
    with pytest.raises(ConfigError, match="Did you mean 'qlora'"):
        validate(RunConfig().replace({"method.method": "qlorra"}))
    assert config_module.QLoraSettings().quant_type == "nf4"


def test_every_preset_is_a_valid_config_and_sets_the_method_learning_rate() -> None:
    assert [p.title for p in PRESETS.values()] == ["Quick test", "Balanced", "Best quality", "Low memory"]
    for name, preset in PRESETS.items():
        config = presets.apply_preset(RunConfig(), name)
        validate(config)
        for key, value in preset.overrides.items():
            assert config.get(key) == value, (name, key)
    full_dpo = RunConfig().replace({"method.method": "full", "method.task": "dpo"})
    assert presets.apply_preset(full_dpo, "Quick test").training.learning_rate == pytest.approx(2e-5 * 0.25)
    with pytest.raises(ConfigError, match="quick_test"):
        presets.apply_preset(RunConfig(), "fastest")


def test_nested_settings_round_trip_and_unknown_nested_key_is_named(tmp_path: Path) -> None:
    config = RunConfig().replace({"method.task": "dpo", "method.dpo.beta": 0.3, "method.qlora.quant_type": "fp4",
                                  "method.rope_scaling": "yarn"})
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    (tmp_path / "bad.yaml").write_text("method:\n  dpo:\n    betta: 0.2\n")
    with pytest.raises(ConfigError, match="method.dpo.beta"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="above its maximum"):
        validate(RunConfig().replace({"method.dpo.beta": 50.0}))


def test_task_auto_follows_the_data_kind_and_wrong_data_is_refused() -> None:
    assert methods.resolve_task("auto", "preference") == "dpo"
    assert methods.resolve_task("auto", "text") == "pretrain"
    assert methods.resolve_task("auto", "conversation") == "sft"
    assert methods.resolve_task("kto", "preference") == "kto"
    with pytest.raises(ConfigError, match="needs preference data") as info:
        methods.check_task_data("dpo", "conversation")
    assert "--task sft" in str(info.value)


def test_warnings_for_known_bad_combinations() -> None:
    from desktop_ft.core.hardware import Hardware, gpu

    cpu = Hardware()
    assert warnings_for(RunConfig(), cpu) == []
    qlora = warnings_for(RunConfig().replace({"method.method": "qlora"}), cpu)
    assert any("NVIDIA GPU" in w for w in qlora)
    big = RunConfig().replace({"method.method": "full", "model.name": "Qwen/Qwen2.5-7B-Instruct",
                               "training.learning_rate": 2e-5})
    assert any("7.0B" in w and "24 GiB" in w for w in warnings_for(big, gpu(24)))
    hot = RunConfig().replace({"method.method": "full"})  # LoRA's default learning rate on full fine-tuning
    assert any("wrecks" in w for w in warnings_for(hot, gpu(24)))


def test_lora_targets_per_architecture() -> None:
    assert trainers.lora_targets("all-linear") == "all-linear"
    assert trainers.lora_targets("q_proj, v_proj") == ["q_proj", "v_proj"]
    assert trainers.lora_targets("attention", "llama") == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert trainers.lora_targets("attention", "gpt2") == ["c_attn"]


def test_rope_scaling_sets_the_transformers_parameters() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(max_position_embeddings=1024)
    apply_rope_scaling(config, "yarn", 4.0)
    assert config.rope_parameters["rope_type"] == "yarn" and config.rope_parameters["factor"] == 4.0
    assert config.rope_parameters["original_max_position_embeddings"] == 1024
    assert config.max_position_embeddings == 4096
    dynamic = LlamaConfig(max_position_embeddings=1024)
    apply_rope_scaling(dynamic, "dynamic", 2.0)
    assert dynamic.rope_parameters["rope_type"] == "dynamic" and dynamic.max_position_embeddings == 1024
    with pytest.raises(UserError, match="already uses 'yarn'"):
        apply_rope_scaling(config, "linear", 2.0)


# -- each method trains ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["lora", "dora", "full", "prompt_tuning", "prefix_tuning"])
def test_each_method_learns_the_toy_task(method: str, tiny_model: Path, toy_chat: Path, tmp_path: Path) -> None:
    events = []
    outcome = train(_config(tiny_model, toy_chat, tmp_path / "run", method), on_event=events.append)
    losses = _losses(events)
    assert outcome.state == "finished" and len(losses) == 6
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.005, losses
    run = RunFolder(tmp_path / "run")
    if method == "full":
        assert outcome.model_dir and (run.model_dir / "config.json").exists() and outcome.adapter_dir is None
    else:
        assert (run.adapter_dir / "adapter_config.json").exists()


def test_rope_scaled_lora_run_trains(tiny_model: Path, toy_chat: Path, tmp_path: Path) -> None:
    config = _config(tiny_model, toy_chat, tmp_path / "run", "lora", **{"method.rope_scaling": "linear",
                                                                       "training.max_steps": 2})
    assert train(config).state == "finished"


@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_raises_the_reward_margin(method: str, tiny_model: Path, toy_preference: Path, tmp_path: Path) -> None:
    # task 'auto' on preference data is DPO; with LoRA the reference is the adapter-disabled base,
    # with full fine-tuning a frozen copy: either way the margin starts at 0 and must grow
    events = []
    outcome = train(_config(tiny_model, toy_preference, tmp_path / "run", method), on_event=events.append)
    assert outcome.state == "finished"
    run = RunFolder(tmp_path / "run")
    assert run.read_config().method.task == "dpo"
    margins = [m["extras"]["rewards/margins"] for m in run.read_metrics() if m["event"] == "StepLogged"]
    assert margins[0] == pytest.approx(0.0, abs=1e-4)
    assert margins[-1] > 0.1, margins
    losses = _losses(events)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("task", ["kto", "orpo"])
def test_other_preference_tasks_learn(task: str, tiny_model: Path, toy_preference: Path, tmp_path: Path) -> None:
    events = []
    outcome = train(_config(tiny_model, toy_preference, tmp_path / "run", "lora", task,
                            **{"training.max_steps": 8}), on_event=events.append)
    losses = _losses(events)
    assert outcome.state == "finished"
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses


def test_continued_pretraining_on_raw_text(tiny_model: Path, toy_text: Path, tmp_path: Path) -> None:
    events = []
    outcome = train(_config(tiny_model, toy_text, tmp_path / "run", "lora"), on_event=events.append)
    assert outcome.state == "finished"
    assert RunFolder(tmp_path / "run").read_config().method.task == "pretrain"
    losses = _losses(events)
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses


def test_qlora_without_cuda_is_a_clear_refusal(tiny_model: Path, toy_chat: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="NVIDIA GPU") as info:
        train(_config(tiny_model, toy_chat, tmp_path / "run", "qlora"))
    assert info.value.field == "method.method"
    assert RunFolder(tmp_path / "run").read_status().state == "failed"


def test_preference_prompts_all_cut_off_refuse_to_start(tiny_model: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "long.jsonl", [{"prompt": "word " * 200, "chosen": "yes", "rejected": "no"}] * 8)
    with pytest.raises(UserError, match="max length"):
        train(_config(tiny_model, data, tmp_path / "run", "lora", "dpo", **{"training.max_length": 32}))


def test_preference_prompts_partly_cut_off_are_counted(tiny_model: Path, tmp_path: Path) -> None:
    rows = [{"prompt": "word " * (200 if i % 2 else 2) + str(i), "chosen": "yes", "rejected": "no"} for i in range(20)]
    events: list = []
    train(_config(tiny_model, _write(tmp_path / "half.jsonl", rows), tmp_path / "run", "lora", "dpo",
                  **{"training.max_length": 32, "training.max_steps": 1, "data.validation_fraction": 0.0}),
          on_event=events.append)
    said = [ev.message for ev in events if type(ev).__name__ == "Progress" and "no answer left" in ev.message]
    assert said == ["10 of 20 examples have no answer left within max length 32, so they teach nothing."]


def test_sft_on_preference_data_learns_the_chosen_answers(tiny_model: Path, toy_preference: Path,
                                                          tmp_path: Path) -> None:
    config = _config(tiny_model, toy_preference, tmp_path / "run", "lora", "sft", **{"training.max_steps": 2})
    assert train(config).state == "finished"


def test_task_for_the_wrong_data_fails_before_loading_the_model(tiny_model: Path, toy_chat: Path,
                                                                tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--task sft"):
        train(_config(tiny_model, toy_chat, tmp_path / "run", "lora", "dpo"))


# -- assistant-only loss on multi-turn chats ------------------------------------------------------------

MULTI_TURN = {"messages": [{"role": "user", "content": "First question?"},
                           {"role": "assistant", "content": "Alpha answer."},
                           {"role": "user", "content": "Second question?"},
                           {"role": "assistant", "content": "Beta answer."}]}


def _sft_trainer(tiny_model: Path, tmp_path: Path, template: str | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    if template:
        tokenizer.chat_template = template
    config = _config(tiny_model, tmp_path / "unused.jsonl", tmp_path / "run", "lora")
    args = dict(output_dir=str(tmp_path / "ckpt"), max_steps=1, per_device_train_batch_size=1, report_to="none",
                use_cpu=True, bf16=False, gradient_checkpointing=False)
    parts = trainers.TrainerParts(config=config, model=AutoModelForCausalLM.from_pretrained(tiny_model),
                                  tokenizer=tokenizer, peft_config=None, train_rows=[MULTI_TURN], eval_rows=[],
                                  args=args, callbacks=[], data_kind="conversation")
    return trainers.build_trainer("sft", parts), tokenizer


def _learned_text(trainer, tokenizer) -> list[str]:
    return [tokenizer.decode([t for t in row["labels"] if t != -100]) if "labels" in row else
            tokenizer.decode([t for t, keep in zip(row["input_ids"], row["completion_mask"]) if keep])
            for row in trainer.train_dataset]


def test_every_assistant_reply_is_learned_with_a_chatml_template(tiny_model: Path, tmp_path: Path) -> None:
    trainer, tokenizer = _sft_trainer(tiny_model, tmp_path)
    assert trainer.args.assistant_only_loss
    [learned] = _learned_text(trainer, tokenizer)
    assert "Alpha answer." in learned and "Beta answer." in learned and "question" not in learned


def test_an_unknown_template_learns_every_reply_one_example_each(tiny_model: Path, tmp_path: Path) -> None:
    plain = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    trainer, tokenizer = _sft_trainer(tiny_model, tmp_path, plain)
    learned = _learned_text(trainer, tokenizer)
    assert len(learned) == 2
    assert "Alpha answer." in learned[0] and "Beta answer." in learned[1]
    assert not any("question" in text for text in learned)


def test_full_dpo_stops_and_resumes_with_its_metrics(tiny_model: Path, toy_preference: Path, tmp_path: Path) -> None:
    import threading

    stop = threading.Event()

    def on_event(event):
        if isinstance(event, StepLogged) and event.step == 2:
            stop.set()

    config = _config(tiny_model, toy_preference, tmp_path / "run", "full", "dpo", **{"training.max_steps": 4})
    assert train(config, on_event=on_event, stop=stop).state == "stopped"
    run = RunFolder(tmp_path / "run")
    assert run.last_checkpoint().name == "checkpoint-2"
    resumed = train(run.read_config(), run=run, resume=True)
    assert resumed.state == "finished" and resumed.step == 4
    rows = [m for m in run.read_metrics() if m["event"] == "StepLogged"]
    assert [m["step"] for m in rows] == [1, 2, 3, 4]
    assert rows[-1]["extras"]["rewards/margins"] > rows[0]["extras"]["rewards/margins"]


@pytest.mark.slow
def test_dpo_on_the_built_in_model_prefers_the_chosen_answers(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()[:32]]
    data = _write(tmp_path / "pref.jsonl", [{"prompt": r["messages"][0]["content"],
                                             "chosen": r["messages"][-1]["content"],
                                             "rejected": "I am not sure, sorry."} for r in rows])
    config = presets.apply_preset(RunConfig(), "quick_test", "preference").replace({
        "data.path": str(data), "output.output_dir": str(tmp_path / "run"), "training.max_steps": 6,
        "training.learning_rate": 5e-4, "training.save_steps": 100, "data.validation_fraction": 0.0})
    assert train(config).state == "finished"
    margins = [m["extras"]["rewards/margins"] for m in RunFolder(tmp_path / "run").read_metrics()
               if m["event"] == "StepLogged"]
    assert margins[-1] > margins[0] and margins[-1] > 0, margins


def test_warnings_read_the_hardware_the_estimate_detects() -> None:
    from desktop_ft.core.hardware import Gpu, Hardware

    gpu = Hardware(gpus=[Gpu("RTX 4090", 24 * 2**30, 23 * 2**30, (8, 9))], bf16=True, bitsandbytes=True)
    full_7b = RunConfig().replace({"method.method": "full", "model.name": "mistralai/Mistral-7B-v0.3",
                                   "training.learning_rate": 2e-5})
    assert any("24 GiB" in w for w in warnings_for(full_7b, gpu))
    assert warnings_for(RunConfig().replace({"method.method": "qlora"}), gpu) == []
    assert any("NVIDIA" in w for w in warnings_for(RunConfig().replace({"method.method": "qlora"}), Hardware()))


def test_kto_with_one_example_per_batch_is_refused_before_loading(tiny_model: Path, toy_preference: Path,
                                                                  tmp_path: Path) -> None:
    config = _config(tiny_model, toy_preference, tmp_path / "run", "lora", "kto", **{"training.batch_size": 1})
    assert any("KTO" in w for w in warnings_for(config))
    with pytest.raises(ConfigError, match="at least 2") as info:
        train(config)
    assert info.value.field == "training.batch_size"


def test_every_number_the_wizard_shows_has_a_sensible_range() -> None:
    import typing

    for key in all_dotted_keys():
        f = field_info(key)
        if key in ("training.seed",) or typing.get_origin(f.type) is not None:
            continue
        if f.type in ("int", "float", int, float):
            assert "min" in f.metadata and "max" in f.metadata, key
