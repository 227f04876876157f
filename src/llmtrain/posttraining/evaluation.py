"""Measuring a model in the task world: its answers to prompts, and their exact-match
accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..pretraining import GPT, Tokenizer
from .chat import encode_chat
from .decoding import decode_answers
from .task_world import Example, check_answer, fact_prompt

__all__ = ["complete", "exact_match", "exact_match_by_task", "fact_accuracy"]


def complete(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 10,
    **decoding,
) -> list[str | None]:
    """The model's answer to each prompt in the chat template: the text it generates up to
    its ``<|end|>`` marker, or None if it does not end within ``max_new_tokens`` tokens.

    ``decoding`` goes to :func:`~llmtrain.posttraining.decode_answers` (``temperature``,
    ``top_k``, ``top_p``, ``min_p``, ``beam_width``, ``seed``, ...); the default,
    ``temperature=0``, is greedy.
    """
    if "beam_width" not in decoding:
        decoding.setdefault("temperature", 0.0)
    end = tokenizer.special_tokens["<|end|>"]
    prompt_ids = [torch.tensor(encode_chat(tokenizer, p)[0]) for p in prompts]
    answers = decode_answers(model, prompt_ids, max_new_tokens, stop_id=end, **decoding)
    # An answer as long as the budget never reached the end marker.
    return [tokenizer.decode(a) if len(a) < max_new_tokens else None for (a,) in answers]


def exact_match(model: GPT, tokenizer: Tokenizer, examples: Sequence[Example], **decoding) -> float:
    """The fraction of ``examples`` the model answers exactly right (greedy by default; the
    keyword arguments are those of :func:`complete`)."""
    answers = complete(model, tokenizer, [e.prompt for e in examples], **decoding)
    return sum(check_answer(e, a) for e, a in zip(examples, answers, strict=True)) / len(examples)


def exact_match_by_task(
    model: GPT, tokenizer: Tokenizer, examples: Sequence[Example], **decoding
) -> dict[str, float]:
    """:func:`exact_match` for each task of ``examples`` separately."""
    tasks = sorted({e.task for e in examples})
    return {
        t: exact_match(model, tokenizer, [e for e in examples if e.task == t], **decoding)
        for t in tasks
    }


@torch.no_grad()
def fact_accuracy(model: GPT, tokenizer: Tokenizer, examples: Sequence[Example]) -> float:
    """The fraction of ``examples`` whose answer the model completes correctly, greedily,
    when asked in the prose of its pretraining text (:func:`fact_prompt`): the answer must
    be followed by the end of the word (a space or a full stop), as in the sentence."""
    right = 0
    for e in examples:
        ids = torch.tensor([tokenizer.encode(fact_prompt(e))])
        out = model.generate(ids, len(e.response) + 1, temperature=0.0)
        text = tokenizer.decode(out[0, ids.shape[1] :].tolist())
        right += text[:-1] == e.response and text[-1] in " ."
    return right / len(examples)
