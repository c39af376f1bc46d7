"""Formats: which columns mean what, found from the column names, and each row normalised to TRL's shapes.

Detection looks at the column names (case does not matter) and, where names alone are ambiguous, at
the first rows' values. The result is a ``Format`` that turns one record into one normalised row or
raises ``RowProblem`` with a sentence saying what is wrong with it.

Normalised rows:
- conversation: ``{"messages": [{"role", "content"}, ...]}``
- prompt_completion: ``{"prompt": str, "completion": str}``
  (both keep KTO's boolean ``label`` where the file has one)
- preference: ``{"prompt", "chosen", "rejected"}``, all strings or all message lists (TRL's DPO shapes)
- text: ``{"text": str}``
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {
    "system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
    "bot": "assistant", "model": "assistant", "chatgpt": "assistant", "bard": "assistant", "claude": "assistant",
    "tool": "tool", "function": "tool", "observation": "tool", "ipython": "tool", "function_call": "assistant",
}
CONVERSATION_COLUMNS = ("messages", "conversations", "conversation", "chat", "dialog", "dialogue", "turns")
PROMPT_COLUMNS = ("question", "query", "prompt", "instruction", "input", "user", "human", "source")
COMPLETION_COLUMNS = ("answer", "response", "output", "completion", "target", "assistant", "gpt", "reply")
TEXT_COLUMNS = ("text", "content", "document", "body", "passage", "article")
#: names of the preferred and the rejected answer, in pairs
PREFERENCE_COLUMNS = (("chosen", "rejected"), ("pos", "neg"), ("positive", "negative"),
                      ("preferred", "dispreferred"), ("accepted", "rejected"), ("better", "worse"),
                      ("chosen_response", "rejected_response"), ("response_chosen", "response_rejected"))
#: names a ``columns:`` mapping may use on its left side
TARGETS = ("messages", "prompt", "completion", "chosen", "rejected", "text", "system", "context")
EXPECTED = ("messages (OpenAI chat), conversations with from/value (ShareGPT), instruction/input/output "
            "(Alpaca), instruction/context/response (Dolly), prompt/completion, question/answer or "
            "query/response pairs, prompt/chosen/rejected or chosen/rejected (preference), or text")
HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


class RowProblem(Exception):
    """One row cannot be used; ``str()`` is the sentence shown beside its line."""


@dataclass(frozen=True)
class Format:
    """What a file holds: its name (``alpaca``…), its kind and which column plays which part."""

    name: str
    kind: str
    fields: dict[str, str] = field(default_factory=dict)  # part ('prompt', 'completion', ...) → column

    def normalise(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "conversation":
            return self._conversation(record)
        if self.kind == "prompt_completion":
            return self._prompt_completion(record)
        if self.kind == "preference":
            return self._preference(record)
        return {"text": text_value(record, self.fields["text"])}

    def _conversation(self, record: dict[str, Any]) -> dict[str, Any]:
        f = self.fields
        if "messages" in f:
            messages = as_messages(_get(record, f["messages"]), f["messages"])
        elif "history" in f:  # LLaMA-Factory's Alpaca: earlier [question, answer] pairs, then this one
            messages = _history(record.get(f["history"]), f["history"]) + [
                {"role": "user", "content": self._prompt_completion(record)["prompt"]},
                {"role": "assistant", "content": text_value(record, f["completion"])}]
        else:  # conversational prompt/completion: lists of messages in two columns
            prompt = _get(record, f["prompt"])
            prompt_msgs = as_messages(prompt, f["prompt"]) if _is_chatlike(prompt) else \
                [{"role": "user", "content": text_value(record, f["prompt"])}]
            completion = _get(record, f["completion"])
            completion_msgs = as_messages(completion, f["completion"]) if _is_chatlike(completion) else \
                [{"role": "assistant", "content": text_value(record, f["completion"])}]
            messages = prompt_msgs + completion_msgs
        system = record.get(f["system"]) if "system" in f else None
        if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}] + messages
        problem = validate_messages(messages)
        if problem:
            raise RowProblem(problem)
        return {"messages": messages, **_label(record, f)}

    def _prompt_completion(self, record: dict[str, Any]) -> dict[str, Any]:
        f = self.fields
        prompt = text_value(record, f["prompt"])
        if "context" in f:
            extra = text_value(record, f["context"], required=False)
            if extra.strip():
                prompt = f"{prompt}\n\n{extra}"
        return {"prompt": prompt, "completion": text_value(record, f["completion"]), **_label(record, f)}

    def _preference(self, record: dict[str, Any]) -> dict[str, Any]:
        f = self.fields
        chosen, rejected = _get(record, f["chosen"]), _get(record, f["rejected"])
        prompt = _get(record, f["prompt"]) if "prompt" in f else None
        if not (_is_chatlike(chosen) or _is_chatlike(rejected) or _is_chatlike(prompt)):
            c, r = text_value(record, f["chosen"]), text_value(record, f["rejected"])
            if "prompt" not in f and _is_hh(c) and _is_hh(r):
                return _split_shared_prompt(parse_hh(c, f["chosen"]), parse_hh(r, f["rejected"]))
            if "prompt" in f:
                p = text_value(record, f["prompt"])
            else:
                p = _common_text_prefix(c, r)
                c, r = c[len(p):], r[len(p):]
            if c == r:
                raise RowProblem("'chosen' and 'rejected' are the same, so there is no preference to learn.")
            if not c.strip() or not r.strip():
                raise RowProblem(f"the {'chosen' if not c.strip() else 'rejected'} answer is empty.")
            return {"prompt": p, "chosen": c, "rejected": r}
        cm = _as_reply(chosen, f["chosen"], record)
        rm = _as_reply(rejected, f["rejected"], record)
        if cm[0]["role"] != "assistant" or rm[0]["role"] != "assistant":  # whole dialogues, prompt inside
            return _split_shared_prompt(cm, rm)
        if prompt is None:
            raise RowProblem("'chosen' and 'rejected' hold only replies and there is no 'prompt' column to say "
                             "what they answer.")
        pm = as_messages(prompt, f["prompt"]) if _is_chatlike(prompt) else \
            [{"role": "user", "content": text_value(record, f["prompt"])}]
        return _checked_preference(pm, cm, rm)


def _history(value: Any, col: str) -> list[dict[str, str]]:
    if value is None or value == []:
        return []
    if not isinstance(value, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        raise RowProblem(f"'{col}' must be a list of [question, answer] pairs.")
    messages = []
    for question, answer in value:
        if not isinstance(question, str) or not isinstance(answer, str):
            raise RowProblem(f"'{col}' must hold text pairs, got {_type_name(question)} and {_type_name(answer)}.")
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def _label(record: dict[str, Any], fields: dict[str, str]) -> dict[str, bool]:
    """KTO's thumbs up/down ('label': true/false), kept beside the row when the file has one."""
    label = record.get(fields["label"]) if "label" in fields else None
    if isinstance(label, bool):
        return {"label": label}
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        return {"label": label.strip().lower() == "true"}
    return {}


def looks_like_a_row(obj: dict[str, Any]) -> bool:
    """True when a JSON object's own keys name a known format (it is one row, not a holder of rows)."""
    return detect_format(list(obj), [obj]) is not None


def resolve_mapping(mapping: dict[str, str] | None, columns: list[str]) -> dict[str, str]:
    """Check a ``columns:`` mapping (part → column; the reverse is accepted too) against the columns found."""
    from desktop_ft.core.errors import DatasetError

    if not mapping:
        return {}
    resolved: dict[str, str] = {}
    for key, value in mapping.items():
        key, value = str(key).strip(), str(value).strip()
        if key in TARGETS and value in columns:
            resolved[key] = value
        elif value in TARGETS and key in columns:
            resolved[value] = key
        elif key in TARGETS:
            raise DatasetError(f"the column mapping (--columns, data.columns) names '{value}', which the file "
                               "does not have",
                               field="data.columns",
                               hint=f"Columns found: {', '.join(columns) or 'none'}.")
        else:
            raise DatasetError(f"the column mapping (--columns, data.columns) uses '{key}', which is not a part "
                               "Desktop FT knows",
                               field="data.columns",
                               hint=f"Map these parts to your columns: {', '.join(TARGETS)}; "
                                    "e.g. prompt=question,completion=answer.")
    return resolved


def detect_format(columns: list[str], sample: list[dict[str, Any]],
                  mapping: dict[str, str] | None = None) -> Format | None:
    """The format the columns (and the first rows' values) say the file holds, or None."""
    names: dict[str, str] = {}
    for c in columns:
        names.setdefault(str(c).strip().lower(), c)
    if mapping:
        found = _detect({k: v for k, v in mapping.items()}, sample)
        if found is not None:
            return found
        mapped_sources = set(mapping.values())
        names = {k: v for k, v in names.items() if v not in mapped_sources or k in mapping}
        names.update(mapping)
    return _detect(names, sample)


def _detect(names: dict[str, str], sample: list[dict[str, Any]]) -> Format | None:
    def values(col: str) -> list[Any]:
        return [r.get(col) for r in sample if isinstance(r, dict) and r.get(col) is not None]

    system = {"system": names["system"]} if "system" in names else {}
    label = {"label": names["label"]} if "label" in names else {}
    good_bad = next(((g, b) for g, b in PREFERENCE_COLUMNS if g in names and b in names), None)
    if good_bad:
        fields = {"chosen": names[good_bad[0]], "rejected": names[good_bad[1]]}
        for p in ("prompt", "question", "instruction", "query", "input") + CONVERSATION_COLUMNS:
            if p in names:
                fields["prompt"] = names[p]
                break
        if "prompt" in fields and fields["prompt"].strip().lower() in CONVERSATION_COLUMNS:
            sharegpt = _is_sharegpt(values(fields["prompt"]))
            return Format("sharegpt_preference" if sharegpt else "messages_preference", "preference", fields)
        if "prompt" in fields:
            return Format("preference", "preference", fields)
        hh = [v for v in values(fields["chosen"])[:20] if isinstance(v, str)]
        name = "anthropic_hh" if hh and all(_is_hh(v) for v in hh) else "preference_implicit_prompt"
        return Format(name, "preference", fields)
    for name in CONVERSATION_COLUMNS:
        if name in names:
            col = names[name]
            vals = values(col)
            if vals and not any(_is_chatlike(v) for v in vals[:20]):
                continue
            return Format("sharegpt" if _is_sharegpt(vals) else "messages", "conversation",
                          {"messages": col, **system, **label})
    if "instruction" in names and "output" in names and "history" in names and \
            any(isinstance(v, list) and v for v in values(names["history"])[:50]):
        extra = {"context": names["input"]} if "input" in names else {}
        return Format("alpaca_history", "conversation", {"prompt": names["instruction"],
                      "completion": names["output"], "history": names["history"], **extra, **system, **label})
    if "instruction" in names and "output" in names:
        extra = {"context": names["input"]} if "input" in names else {}
        return Format("alpaca", "prompt_completion",
                      {"prompt": names["instruction"], "completion": names["output"], **extra, **label})
    if "instruction" in names and "response" in names:
        extra = {"context": names["context"]} if "context" in names else \
            {"context": names["input"]} if "input" in names else {}
        return Format("dolly", "prompt_completion",
                      {"prompt": names["instruction"], "completion": names["response"], **extra, **label})
    if "prompt" in names and "completion" in names:
        fields = {"prompt": names["prompt"], "completion": names["completion"]}
        if any(_is_chatlike(v) for v in values(names["prompt"])[:20] + values(names["completion"])[:20]):
            return Format("prompt_completion_chat", "conversation", {**fields, **system, **label})
        extra = {"context": names["context"]} if "context" in names else {}
        return Format("prompt_completion", "prompt_completion", {**fields, **extra, **label})
    for p in PROMPT_COLUMNS:
        for c in COMPLETION_COLUMNS:
            if p in names and c in names:
                extra = {}
                for e in ("context", "input"):
                    if e in names and e != p:
                        extra = {"context": names[e]}
                        break
                return Format(f"{p}_{c}", "prompt_completion",
                              {"prompt": names[p], "completion": names[c], **extra, **label})
    for t in TEXT_COLUMNS:
        if t in names:
            return Format("text", "text", {"text": names[t]})
    return None


def _is_sharegpt(values: list[Any]) -> bool:
    """True when the first message list among ``values`` uses ShareGPT's from/value keys."""
    for value in values[:20]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                continue
        if isinstance(value, dict):
            value = [value]
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return "from" in value[0]
    return False


# -- values ----------------------------------------------------------------------------------------

def _get(record: dict[str, Any], col: str) -> Any:
    if col not in record:
        raise RowProblem(f"has no '{col}' field.")
    return record[col]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def text_value(record: dict[str, Any], col: str, *, required: bool = True) -> str:
    """The text in ``col``: numbers become text; missing, null or blank is a problem when required."""
    if col not in record:
        if required:
            raise RowProblem(f"has no '{col}' field.")
        return ""
    value = record[col]
    if value is None or (isinstance(value, float) and value != value):
        if required:
            raise RowProblem(f"'{col}' is empty.")
        return ""
    if isinstance(value, bool):
        raise RowProblem(f"'{col}' must be text, got true/false.")
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise RowProblem(f"'{col}' must be text, got {_type_name(value)}.")
    if required and not value.strip():
        raise RowProblem(f"'{col}' is empty.")
    return value


def _is_chatlike(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return True
    if isinstance(value, dict):  # one message, as in LLaMA-Factory's ShareGPT preference files
        return any(k in value for k in ("role", "from"))
    return isinstance(value, str) and value.lstrip().startswith("[{")


def _is_hh(text: str) -> bool:
    return "\n\nAssistant:" in text and ("\n\nHuman:" in text or text.lstrip().startswith("Human:"))


def as_messages(value: Any, col: str) -> list[dict[str, str]]:
    """A list of ``{role, content}`` from OpenAI or ShareGPT messages (or their JSON text, as in a CSV cell)."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            raise RowProblem(f"'{col}' must be a list of messages, got text.")
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = _python_literal(text)  # pandas' to_csv writes lists as Python reprs, single quotes
            if value is None:
                raise RowProblem(f"'{col}' holds text that is not a valid JSON list of messages.") from None
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, dict) and any(k in value for k in ("role", "from")):
        value = [value]
    if not isinstance(value, list):
        raise RowProblem(f"'{col}' must be a list of messages, got {_type_name(value)}.")
    if not value:
        raise RowProblem(f"'{col}' is an empty list.")
    out = []
    for i, msg in enumerate(value, start=1):
        if not isinstance(msg, dict):
            raise RowProblem(f"message {i} in '{col}' must be an object with 'role' and 'content', "
                             f"got {_type_name(msg)}.")
        role_key = next((k for k in ("role", "from") if msg.get(k) is not None), None)
        content_key = next((k for k in ("content", "value", "text") if k in msg and
                            (msg[k] is not None or k == "content")), None)
        if role_key is None or content_key is None:
            keys = ", ".join(map(str, msg)) or "nothing"
            raise RowProblem(f"message {i} in '{col}' needs 'role' and 'content' (or ShareGPT's 'from' and "
                             f"'value'); it has {keys}.")
        raw_role = msg[role_key]
        role = ROLE_ALIASES.get(raw_role.strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise RowProblem(f"message {i} has unknown role {raw_role!r}; use one of system, user, assistant, tool "
                             "(ShareGPT: system, human, gpt).")
        out.append({"role": role, "content": _content(msg[content_key], i)})
    return out


def _python_literal(text: str) -> Any:
    """A Python list literal (only literals: ``ast.literal_eval`` runs no code), or None."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None
    return value if isinstance(value, list) else None


def _content(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        raise RowProblem(f"message {i} has no text (its content is null); tool calls and images are not "
                         "supported yet.")
    if isinstance(content, bool):
        raise RowProblem(f"message {i} 'content' must be text, got true/false.")
    if isinstance(content, (int, float)):
        return str(content)
    if isinstance(content, list):  # OpenAI content parts
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                kind = part.get("type", "unknown") if isinstance(part, dict) else _type_name(part)
                raise RowProblem(f"message {i} has a '{kind}' part; only text is supported.")
        return "".join(texts)
    raise RowProblem(f"message {i} 'content' must be text, got {_type_name(content)}.")


def validate_messages(messages: Any) -> str | None:
    """None when ``messages`` is a usable conversation, else a sentence saying what is wrong."""
    if messages is None:
        return "has no 'messages' field."
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {role, content}."
    for i, msg in enumerate(messages, start=1):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            return f"message {i} must be an object with 'role' and 'content'."
        if msg["role"] not in ROLES:
            return f"message {i} has unknown role {msg['role']!r}; use one of {', '.join(ROLES)}."
        if not isinstance(msg["content"], str):
            return f"message {i} 'content' must be text, got {_type_name(msg['content'])}."
        if not msg["content"].strip() and msg["role"] != "system":
            return f"message {i} ({msg['role']}) is empty."
    if not any(m["role"] == "assistant" for m in messages):
        return "the conversation has no assistant turn, so there is nothing to learn from."
    first = next(m for m in messages if m["role"] != "system")
    if first["role"] == "assistant":
        return "the conversation starts with the assistant; add the user's turn before it."
    return None


# -- preference helpers ------------------------------------------------------------------------------

def parse_hh(text: str, col: str) -> list[dict[str, str]]:
    """Anthropic HH text ('\\n\\nHuman: …\\n\\nAssistant: …') → messages."""
    parts = HH_TURN.split(text)
    if parts[0].strip():
        raise RowProblem(f"'{col}' has text before the first 'Human:' turn.")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": content.strip()})
    return messages


def _as_reply(value: Any, col: str, record: dict[str, Any]) -> list[dict[str, str]]:
    if _is_chatlike(value):
        return as_messages(value, col)
    text = text_value(record, col)
    return [{"role": "assistant", "content": text}]


def _split_shared_prompt(chosen: list[dict[str, str]], rejected: list[dict[str, str]]) -> dict[str, Any]:
    """Whole dialogues → the shared prompt and the two replies that differ (TRL's explicit-prompt shape)."""
    k = 0
    while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
        k += 1
    if k >= len(chosen) and k >= len(rejected):
        raise RowProblem("'chosen' and 'rejected' are the same, so there is no preference to learn.")
    while k > 0 and k < len(chosen) and chosen[k]["role"] != "assistant":
        k -= 1
    if k == 0:
        raise RowProblem("'chosen' and 'rejected' share no opening turns, so the prompt they answer is unclear; "
                         "add a 'prompt' column.")
    return _checked_preference(chosen[:k], chosen[k:], rejected[k:])


def _checked_preference(prompt: list[dict[str, str]], chosen: list[dict[str, str]],
                        rejected: list[dict[str, str]]) -> dict[str, Any]:
    for name, reply in (("chosen", chosen), ("rejected", rejected)):
        if not reply or not any(m["content"].strip() for m in reply if m["role"] == "assistant"):
            raise RowProblem(f"the {name} reply is empty.")
    if chosen == rejected:
        raise RowProblem("'chosen' and 'rejected' are the same, so there is no preference to learn.")
    if not any(m["role"] == "user" and m["content"].strip() for m in prompt):
        raise RowProblem("the prompt has no user turn.")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _common_text_prefix(a: str, b: str) -> str:
    """The shared start of two answers, cut back to a word boundary (TRL's implicit prompt, in words)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    cut = max(a.rfind(" ", 0, n), a.rfind("\n", 0, n))
    return a[:cut + 1] if cut >= 0 else ""
