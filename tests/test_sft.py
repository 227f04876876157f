"""Part IV, instruction tuning: the task world, the chat template, the loss mask, packing with
document masks, fine-tuning with Part III's trainer, and the accuracies the chapter states."""

import math

import pytest
import torch
import torch.nn.functional as F

from llmtrain.posttraining import (
    ALPACA_TEMPLATE,
    CHAT_SPECIAL_TOKENS,
    TASKS,
    Example,
    FinetuneConfig,
    PackedExamples,
    alpaca_record,
    apply_lora,
    chat_text,
    chat_tokenizer,
    check_answer,
    correct_answer,
    encode_chat,
    finetune,
    make_examples,
    pretraining_text,
    sft_tokens,
    world_words,
)
from llmtrain.pretraining import GPT, GPTConfig

TOKENIZER = chat_tokenizer()


def tiny_gpt(position="rope", seed=0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=TOKENIZER.vocab_size,
        block_size=64,
        n_layer=2,
        n_head=2,
        n_embd=16,
        position=position,
    )
    return GPT(config).double()


# -- the task world ----------------------------------------------------------------------------


def test_world_words_are_disjoint_fixed_and_well_formed():
    train, test = world_words()
    assert len(test) == 300 and len(train) == 2700 and not set(train) & set(test)
    assert world_words() == (train, test)
    assert all(3 <= len(w) <= 5 and w.isalpha() and w.islower() for w in train + test)


def test_answers_are_the_tasks():
    assert [correct_answer(t, "kelum") for t in TASKS] == ["mulek", "KELUM", "5", "k"]
    with pytest.raises(ValueError, match="task must be one of"):
        correct_answer("sort", "kelum")


def test_examples_are_deterministic_balanced_and_right():
    examples = make_examples("test", 40, seed=3)
    assert examples == make_examples("test", 40, seed=3)
    assert examples != make_examples("test", 40, seed=4)
    assert [e.task for e in examples[:4]] == list(TASKS)
    _, test = world_words()
    for e in examples:
        assert e.word in test and e.word in e.prompt
        assert e.response == correct_answer(e.task, e.word)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        make_examples("val", 3)
    with pytest.raises(ValueError, match="n must be"):
        make_examples("train", 0)


def test_pretraining_text_states_facts_about_training_words_only_and_never_instructs():
    text = pretraining_text(4000)
    train, test = world_words()
    words = set(text.replace(".", " ").replace(",", " ").split())
    assert not words & set(test)
    assert len(words & set(train)) > 1000
    assert not any(t in text for t in CHAT_SPECIAL_TOKENS)
    for e in make_examples("train", 50):  # no instruction at all
        assert e.prompt not in text
    assert "?" not in text and "Reverse the word" not in text and "Capitalise" not in text


def test_check_answer_is_exact_match():
    e = Example("reverse", "kelum", "Reverse the word kelum.", "mulek")
    assert check_answer(e, "mulek")
    assert not check_answer(e, "mulek ") and not check_answer(e, "Mulek")
    assert not check_answer(e, None)


# -- formats and the chat template --------------------------------------------------------------


def test_alpaca_record_and_template():
    e = make_examples("train", 1)[0]
    record = alpaca_record(e)
    assert record == {"instruction": e.prompt, "input": "", "output": e.response}
    # PROMPT_DICT["prompt_no_input"] of tatsu-lab/stanford_alpaca's train.py, verbatim.
    upstream = (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
    )
    assert ALPACA_TEMPLATE == upstream
    assert ALPACA_TEMPLATE.format(instruction=record["instruction"]).count(e.prompt) == 1


def test_chat_template_uses_special_ids_and_keeps_typed_markers_as_bytes():
    assert TOKENIZER.vocab_size == 259
    ids = {t: TOKENIZER.special_tokens[t] for t in CHAT_SPECIAL_TOKENS}
    assert list(ids.values()) == [256, 257, 258]
    prompt, response = encode_chat(TOKENIZER, "Spell ab backwards.", "ba")
    assert prompt == [256, *b"Spell ab backwards.", 257]
    assert response == [*b"ba", 258]
    e = Example("reverse", "ab", "Spell ab backwards.", "ba")
    assert TOKENIZER.encode(chat_text(e), allowed_special="all") == prompt + response
    # A user typing a marker gets its bytes, never the marker's id.
    typed, _ = encode_chat(TOKENIZER, "hi <|assistant|> there")
    assert typed.count(257) == 1 and typed[-1] == 257
    assert bytes(typed[1:-1]).decode() == "hi <|assistant|> there"


# -- the loss mask -----------------------------------------------------------------------------


@pytest.mark.algorithm("alg-sft-loss-mask")
def test_prompt_tokens_carry_no_loss_and_response_tokens_do():
    e = Example("capitals", "kelum", "Capitalise kelum.", "KELUM")
    inputs, labels = sft_tokens(TOKENIZER, e)
    prompt, response = encode_chat(TOKENIZER, e.prompt, e.response)
    ids = prompt + response
    assert inputs == ids[:-1] and len(labels) == len(inputs)
    assert labels[: len(prompt) - 1] == [-100] * (len(prompt) - 1)
    assert labels[len(prompt) - 1 :] == response  # the end marker is a target too
    # The loss is the mean cross-entropy over the response tokens alone.
    model = tiny_gpt()
    logits, loss = model(torch.tensor([inputs]), torch.tensor([labels]))
    by_hand = -F.log_softmax(logits[0].detach(), -1)[
        torch.arange(len(labels)), torch.tensor(ids[1:])
    ]
    assert float(loss.detach()) == pytest.approx(
        float(by_hand[len(prompt) - 1 :].mean()), rel=1e-12
    )
    # No gradient reaches the logits of a prompt position; every response position gets one.
    logits = logits.detach().requires_grad_()
    F.cross_entropy(logits[0], torch.tensor(labels), ignore_index=-100).backward()
    per_position = logits.grad[0].abs().sum(-1)
    assert (per_position[: len(prompt) - 1] == 0).all()
    assert (per_position[len(prompt) - 1 :] > 0).all()


# -- packing -----------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-packing")
@pytest.mark.parametrize("position", ["rope", "learned"])
def test_packed_rows_give_the_losses_of_the_examples_read_one_by_one(position):
    examples = make_examples("train", 30, seed=7)
    data = PackedExamples(TOKENIZER, examples, 64, packing=True)
    inputs, labels, documents = data.batch(6, torch.Generator().manual_seed(0))
    model = tiny_gpt(position).requires_grad_(False)
    logits, loss = model(inputs, labels, documents)
    # Each row's examples, cut out and read alone.
    total, count = 0.0, 0
    packed_logits = []
    for r in range(len(inputs)):
        for d in documents[r].unique():
            cols = documents[r] == d
            if (labels[r, cols] == -100).all():
                continue  # the padding
            x, y = inputs[r, cols][None], labels[r, cols][None]
            alone, _ = model(x)
            packed_logits.append((logits[r, cols], alone[0]))
            nll = F.cross_entropy(alone[0], y[0], ignore_index=-100, reduction="sum")
            total, count = total + float(nll), count + int((y != -100).sum())
    assert len(packed_logits) > len(inputs)  # rows really hold several examples
    for packed, alone in packed_logits:
        torch.testing.assert_close(packed, alone, rtol=0, atol=1e-10)
    assert float(loss) == pytest.approx(total / count, rel=1e-10)
    # Without the document mask the examples see each other, and the loss changes.
    _, unmasked = model(inputs, labels)
    assert abs(float(unmasked) - float(loss)) > 1e-6


@pytest.mark.algorithm("alg-packing")
def test_packing_fills_rows_with_whole_examples():
    examples = make_examples("train", 200)
    packed = PackedExamples(TOKENIZER, examples, 64, packing=True)
    single = PackedExamples(TOKENIZER, examples, 64, packing=False)
    generator = torch.Generator().manual_seed(1)
    inputs, labels, documents = packed.batch(16, generator)
    assert inputs.shape == labels.shape == documents.shape == (16, 64)
    known = {tuple(ids) for ids, _ in packed.examples}
    for r in range(16):
        for d in documents[r].unique()[:-1]:  # every document but the last is an example
            assert tuple(inputs[r, documents[r] == d].tolist()) in known
    _, _, d1 = single.batch(16, torch.Generator().manual_seed(1))
    assert (d1.max(dim=1).values == 1).all()  # one example and the padding
    assert packed.fill() > 0.75 > 0.5 > single.fill()
    # The same generator state gives the same batch: the trainer's resume relies on it.
    again = packed.batch(16, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], inputs)


def test_packing_rejects_bad_input():
    examples = make_examples("train", 5)
    with pytest.raises(ValueError, match="block_size must be at least the longest"):
        PackedExamples(TOKENIZER, examples, 10)
    with pytest.raises(ValueError, match="examples must hold"):
        PackedExamples(TOKENIZER, [], 64)
    with pytest.raises(ValueError, match="block_size"):
        PackedExamples(TOKENIZER, examples, 1)


# -- fine-tuning with Part III's trainer -------------------------------------------------------


def test_finetune_lowers_the_response_loss_and_checks_its_config():
    model = tiny_gpt().float()
    examples = make_examples("train", 100)
    config = FinetuneConfig(max_iters=30, eval_interval=30, eval_iters=2, lr=3e-3, warmup_iters=3)
    result = finetune(model, TOKENIZER, examples, examples[:20], config)
    assert result.log[0]["train_loss"] > math.log(TOKENIZER.vocab_size) - 1
    assert result.log[-1]["train_loss"] < result.log[0]["train_loss"] - 0.5
    with pytest.raises(TypeError, match="config must be a FinetuneConfig"):
        finetune(model, TOKENIZER, examples, examples, object())
    with pytest.raises(ValueError, match="block_size must be at most the model's context"):
        finetune(model, TOKENIZER, examples, examples, FinetuneConfig(block_size=65))
    with pytest.raises(ValueError, match="warmup_iters"):
        FinetuneConfig(max_iters=5, warmup_iters=20)


def test_finetune_with_lora_trains_the_adapters_alone():
    model = apply_lora(tiny_gpt().float(), 4, 8.0, ["c_attn", "c_fc"])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    config = FinetuneConfig(max_iters=5, eval_interval=5, eval_iters=1, warmup_iters=1)
    finetune(model, TOKENIZER, make_examples("train", 20), make_examples("train", 5), config)
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
        else:
            assert not torch.equal(p, adapters[n]) or n.endswith("lora_B"), n
    assert any(
        not torch.equal(p, adapters[n]) for n, p in model.named_parameters() if n in adapters
    )


def test_finetune_resumes_exactly(tmp_path):
    examples, val = make_examples("train", 60), make_examples("train", 10, seed=2)
    config = FinetuneConfig(max_iters=8, eval_interval=4, eval_iters=1, warmup_iters=1)
    whole = finetune(tiny_gpt().float(), TOKENIZER, examples, val, config)
    stopped = tiny_gpt().float()
    from llmtrain.pretraining import train_loop

    data = PackedExamples(TOKENIZER, examples, 64)
    vdata = PackedExamples(TOKENIZER, val, 64)
    train_loop(
        stopped,
        data,
        vdata,
        config,
        out=tmp_path,
        progress=False,
        callback=lambda r: r["iter"] == 4,
    )
    resumed = finetune(
        tiny_gpt(seed=5).float(), TOKENIZER, examples, val, config, out=tmp_path, resume=True
    )
    assert resumed.losses == whole.losses


# -- the chapter's claims ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    from llmtrain.posttraining import base_model, cached_finetune

    return base_model(), cached_finetune("full")


def test_the_base_model_cannot_follow_instructions_and_the_sft_model_can(models):
    from llmtrain.posttraining import exact_match, exact_match_by_task

    (base, tokenizer), run = models
    test = make_examples("test", 400, seed=1)
    assert exact_match(base, tokenizer, test) <= 0.05  # "near zero"
    assert exact_match(run.model, tokenizer, test) >= 0.9  # "at least 90%"
    by_task = exact_match_by_task(run.model, tokenizer, test)
    assert min(by_task, key=by_task.get) == "reverse"  # "the hardest task"


# -- measuring answers -------------------------------------------------------------------------


def constant_model(end_logit: float) -> GPT:
    """A GPT whose next-token logits are end_logit for <|end|> and 0 for every other token."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=259, block_size=64, n_layer=1, n_head=1, n_embd=8, bias=True)
    model = GPT(config)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(torch.eye(8)[0])  # every final state is e_0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[258, 0] = end_logit
    return model


def test_complete_cuts_at_the_end_marker_and_reports_answers_that_never_end():
    from llmtrain.posttraining import complete, exact_match

    prompts = ["Spell ab backwards.", "How long is kelum?", "Capitalise ab."]
    assert complete(constant_model(5.0), TOKENIZER, prompts) == ["", "", ""]
    # Greedy never picks <|end|> when its logit is the lowest: no answer ends.
    never = complete(constant_model(-5.0), TOKENIZER, prompts, max_new_tokens=4)
    assert never == [None, None, None]
    examples = make_examples("test", 8)
    assert exact_match(constant_model(5.0), TOKENIZER, examples) == 0.0


def test_the_base_model_never_ends_an_answer(models):
    from llmtrain.posttraining import complete

    (base, tokenizer), _ = models
    prompts = [e.prompt for e in make_examples("test", 40, seed=1)]
    assert complete(base, tokenizer, prompts) == [None] * 40


def test_pretraining_gives_the_skill_sft_gives_the_format(models):
    """The chapter: the base model knows every task in prose; the same fine-tuning from
    random weights learns far less, reversal least of all."""
    from llmtrain.posttraining import (
        SFT_CONFIG,
        complete,
        exact_match_by_task,
        fact_accuracy,
        sft_examples,
    )

    (base, tokenizer), run = models
    test = make_examples("test", 400, seed=1)
    for task in TASKS:
        assert fact_accuracy(base, tokenizer, [e for e in test if e.task == task]) >= 0.9
    torch.manual_seed(0)
    scratch = GPT(base.config)
    finetune(scratch, tokenizer, *sft_examples(), SFT_CONFIG)
    from_scratch = exact_match_by_task(scratch, tokenizer, test)
    tuned = exact_match_by_task(run.model, tokenizer, test)
    # The claims of the exercise ex-sft-from-scratch: the format and the rule-like tasks are
    # learned from the fine-tuning data alone, reversal much less.
    assert None not in complete(scratch, tokenizer, [e.prompt for e in test])
    assert from_scratch["first_letter"] >= 0.95 and from_scratch["length"] >= 0.95
    assert from_scratch["capitals"] >= 0.5
    assert from_scratch["reverse"] < 0.5 * tuned["reverse"]
    assert sum(from_scratch.values()) < sum(tuned.values()) - 0.5


def test_few_examples_overfit(models):
    from llmtrain.posttraining import base_model, sft_examples

    (_, tokenizer), _ = models
    train_examples, val_examples = sft_examples()
    torch.manual_seed(0)
    model = base_model()[0]
    config = FinetuneConfig(max_iters=100, eval_interval=10)  # the chapter's run
    log = finetune(model, tokenizer, train_examples[:48], val_examples, config).log
    best = min(log, key=lambda r: r["val_loss"])
    assert 0 < best["iter"] < log[-1]["iter"]
    assert log[-1]["val_loss"] > 1.2 * best["val_loss"]
    assert log[-1]["train_loss"] < 0.1 * best["val_loss"]
