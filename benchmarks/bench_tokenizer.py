"""Speed of the book's byte-level BPE tokenizer against HuggingFace ``tokenizers`` (training),
the literal algorithm that recounts every pair after each merge (training), and ``tiktoken``
(encoding with the same merges). Reads Tiny Shakespeare from ../shared/data if it is there.
"""

from __future__ import annotations

import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import regex

from llmtrain.pretraining import GPT4_SPLIT_PATTERN, BPETokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def naive_train(text: str, vocab_size: int, pattern: str = GPT4_SPLIT_PATTERN) -> list:
    """The literal algorithm (minbpe's): every chunk of the text kept as a list of ids, and
    every pair counted again after each merge. Ties go to the smallest pair, as in the
    package, so that both return the same merges."""
    chunks = [list(c.encode("utf-8")) for c in regex.findall(pattern, text)]
    merges = []
    for i in range(vocab_size - 256):
        counts = Counter()
        for ids in chunks:
            counts.update(pairwise(ids))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        new = 256 + i
        for k, ids in enumerate(chunks):
            out, j = [], 0
            while j < len(ids):
                if j + 1 < len(ids) and ids[j] == pair[0] and ids[j + 1] == pair[1]:
                    out.append(new)
                    j += 2
                else:
                    out.append(ids[j])
                    j += 1
            chunks[k] = out
    return merges


def _seconds(f, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def _hf_train(text: str, vocab_size: int) -> None:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT4_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        min_frequency=0,
    )
    hf.train_from_iterator([text], trainer)


def main() -> None:
    if not DATA.exists():
        print(f"skipped: {DATA} is missing")
        return
    import tiktoken

    text = DATA.read_text(encoding="utf-8")
    print(f"Tiny Shakespeare: {len(text.encode()):,} bytes")

    ours = _seconds(lambda: BPETokenizer.train(text, 4096), repeat=2)
    theirs = _seconds(lambda: _hf_train(text, 4096), repeat=2)
    print(f"train V=4096, whole text: ours {ours:.2f} s, HF tokenizers {theirs:.2f} s, "
          f"ratio ours/HF {ours / theirs:.2f} (goal: at most 20)")  # fmt: skip

    small = text[:200_000]
    ours = _seconds(lambda: BPETokenizer.train(small, 512), repeat=2)
    start = time.perf_counter()
    naive = naive_train(small, 512)
    slow = time.perf_counter() - start
    assert naive == BPETokenizer.train(small, 512).merges
    print(f"train V=512, first 200 KB: ours {ours:.3f} s, naive recount {slow:.1f} s, "
          f"speed-up {slow / ours:.0f}x (goal: at least 50x)")  # fmt: skip

    tok = BPETokenizer.train(text, 4096)
    ranks = {tok.vocab[i]: i for i in range(tok.vocab_size)}
    enc = tiktoken.Encoding(name="bench", pat_str=tok.pattern, mergeable_ranks=ranks,
                            special_tokens={})  # fmt: skip
    cold = _seconds(lambda: BPETokenizer(tok.merges, tok.pattern).encode(text))
    warm = _seconds(lambda: tok.encode(text), repeat=2)
    fast = _seconds(lambda: enc.encode_ordinary(text), repeat=2)
    assert tok.encode(text) == enc.encode_ordinary(text)
    mb = len(text.encode()) / 1e6
    print(f"encode whole text: ours {mb / cold:.1f} MB/s (empty cache), {mb / warm:.1f} MB/s "
          f"(warm cache), tiktoken {mb / fast:.1f} MB/s; tiktoken/ours {cold / fast:.1f}x "
          f"(empty cache), {warm / fast:.1f}x (warm)")  # fmt: skip


if __name__ == "__main__":
    main()
