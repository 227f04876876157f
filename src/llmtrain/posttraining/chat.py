"""Instruction data formats: Alpaca-style records and a chat template with role tokens.

A chat template turns a conversation into one token sequence. Its markers (who speaks, where
a turn ends) are *special tokens*: ids of their own in the vocabulary, which no text can
produce. A user who types the string ``<|assistant|>`` gets the bytes of that string, not the
marker, so the model can always tell the template from what was said inside it.

The book's template has three special tokens, reserved in Part III's byte-level
:class:`~llmtrain.pretraining.BPETokenizer` (256 byte tokens, no merges, so that every
letter of the task world's words is a token of its own)::

    <|user|>Reverse the word kelum.<|assistant|>mulek<|end|>
"""

from __future__ import annotations

from ..pretraining import BPETokenizer
from .task_world import Example

__all__ = [
    "ALPACA_TEMPLATE",
    "CHAT_SPECIAL_TOKENS",
    "alpaca_record",
    "chat_prompt",
    "chat_text",
    "chat_tokenizer",
    "encode_chat",
]

#: The role markers of the chat template, in the order of their ids (256, 257, 258).
CHAT_SPECIAL_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>")

#: The Alpaca prompt for a record without an input field, as in Stanford Alpaca's training
#: code (Taori et al., 2023); the output follows it directly.
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)


def chat_tokenizer() -> BPETokenizer:
    """The book's chat tokenizer: the 256 bytes and the three role markers (V = 259)."""
    return BPETokenizer(special_tokens=CHAT_SPECIAL_TOKENS)


def alpaca_record(example: Example) -> dict[str, str]:
    """The example as an Alpaca-style record: ``instruction``, ``input`` (empty here: the
    word is part of the instruction) and ``output``."""
    return {"instruction": example.prompt, "input": "", "output": example.response}


def chat_prompt(prompt: str) -> str:
    """The template up to the point where the assistant starts answering."""
    user, assistant, _ = CHAT_SPECIAL_TOKENS
    return f"{user}{prompt}{assistant}"


def chat_text(example: Example) -> str:
    """The whole example in the chat template, answer and end marker included."""
    return chat_prompt(example.prompt) + example.response + CHAT_SPECIAL_TOKENS[2]


def encode_chat(
    tokenizer: BPETokenizer, prompt: str, response: str | None = None
) -> tuple[list[int], list[int]]:
    """The token ids of the prompt in the template and of the response with its end marker
    (empty when ``response`` is None). The markers become their special ids; the text between
    them is encoded as ordinary text, so a marker typed by a user stays plain bytes."""
    user, assistant, end = (tokenizer.special_tokens[t] for t in CHAT_SPECIAL_TOKENS)
    prompt_ids = [user, *tokenizer.encode_ordinary(prompt), assistant]
    response_ids = [] if response is None else [*tokenizer.encode_ordinary(response), end]
    return prompt_ids, response_ids
