"""Tokenizers: byte-level BPE against tiktoken and HuggingFace tokenizers, WordPiece's score,
the unigram model's Viterbi split, the character tokenizer, saving and errors."""

import inspect
import itertools
import json
import math
import random

import pytest
import regex
import tiktoken
import tiktoken_ext.openai_public as openai_public
from tokenizers import Regex, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.models import BPE

from llmtrain.pretraining import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    HELD_OUT_MODULES,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    bytes_per_token,
    compression_curve,
    likelihood_gain,
    load_tokenizer,
    merge_scores,
    python_source,
    unigram_segment,
    wordpiece_score,
)

TEXT = python_source(("textwrap", "fractions", "calendar"))  # about 110 KB of real text
HELD_OUT = python_source(HELD_OUT_MODULES)


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, 1024, special_tokens=("<|endoftext|>", "<|pad|>"))


def random_text(rng: random.Random, n: int, *, any_code_point: bool = True) -> str:
    """Text mixing ASCII, accents, combining marks, CJK, emoji with ZWJ sequences, code
    points from every plane (no surrogates) and runs of whitespace and newlines."""
    pieces = [
        lambda: rng.choice(["the", " cat", "don't", "I'LL", "1234567", " 42", "  ", "\n\n", "\t"]),
        lambda: rng.choice(["é", "e\u0301", "ñ", "ü", "Ω", "ж", "ש", "ع", "क्ष", "中文", "日本語"]),
        lambda: rng.choice(["😀", "👍🏽", "👩\u200d💻", "👨\u200d👩\u200d👧", "🇫🇷", "\u200d"]),
        lambda: rng.choice([" ", "\r\n", "   \n", "\u00a0", "\u3000"]),
        lambda: chr(rng.choice([rng.randrange(0x20, 0xD800), rng.randrange(0xE000, 0x110000)])),
    ]
    if not any_code_point:
        pieces.pop()
    return "".join(rng.choice(pieces)() for _ in range(n))


# -- pre-tokenisation ---------------------------------------------------------------------------


def test_split_patterns_cut_like_tiktokens_patterns():
    # tiktoken writes the patterns with possessive quantifiers; the chunks must be the same.
    gpt2 = openai_public.r50k_pat_str
    gpt4 = regex.search(r'"pat_str": r"""(.*?)"""', inspect.getsource(openai_public.cl100k_base))
    rng = random.Random(0)
    for text in [TEXT[:20000], HELD_OUT[:20000]] + [random_text(rng, 200) for _ in range(30)]:
        assert regex.findall(GPT2_SPLIT_PATTERN, text) == regex.findall(gpt2, text)
        # tiktoken's cl100k pattern has an extra first choice for whitespace at the very end of
        # a text (\s++$), which keeps that run whole; elsewhere the chunks are the same.
        text = text.rstrip() + "."
        assert regex.findall(GPT4_SPLIT_PATTERN, text) == regex.findall(gpt4[1], text)
    assert regex.findall(GPT4_SPLIT_PATTERN, "a\n  ") == ["a", "\n", "  "]
    assert regex.findall(gpt4[1], "a\n  ") == ["a", "\n  "]


def test_split_patterns_cut_like_huggingface_split():
    # An independent regex engine (Oniguruma, inside HF tokenizers) cuts the same chunks. Its
    # Unicode tables are of another version, so unassigned code points are left out.
    rng = random.Random(5)
    for pattern in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN):
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
        for text in [HELD_OUT[:5000]] + [
            random_text(rng, 100, any_code_point=False) for _ in range(20)
        ]:
            chunks = [chunk for chunk, _ in split.pre_tokenize_str(text)]
            assert chunks == regex.findall(pattern, text)


def test_split_patterns_differ_where_the_chapter_says():
    text = "We'VE 12345 apples!!\n\n  ok"
    assert regex.findall(GPT2_SPLIT_PATTERN, text) == [
        "We", "'", "VE", " 12345", " apples", "!!", "\n\n ", " ok"
    ]  # fmt: skip
    assert regex.findall(GPT4_SPLIT_PATTERN, text) == [
        "We", "'VE", " ", "123", "45", " apples", "!!\n\n", " ", " ok"
    ]  # fmt: skip
    # A letter run takes one leading non-letter, non-digit, non-newline in GPT-4 only; a
    # whitespace run with newlines ends after its last newline in GPT-4 only.
    code = "x.append(foo)\n\n    return x"
    assert regex.findall(GPT2_SPLIT_PATTERN, code) == [
        "x", ".", "append", "(", "foo", ")", "\n\n   ", " return", " x"
    ]  # fmt: skip
    assert regex.findall(GPT4_SPLIT_PATTERN, code) == [
        "x", ".append", "(foo", ")\n\n", "   ", " return", " x"
    ]  # fmt: skip
    assert regex.findall(GPT4_SPLIT_PATTERN, "x = 1  \n  y") == [
        "x", " =", " ", "1", "  \n", " ", " y"
    ]  # fmt: skip


# -- training -----------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-bpe-train")
def test_textbook_example_aaabdaaabac():
    # The classic example: aa -> Z, then ab -> Y, then ZY -> X, so "aaabdaaabac" becomes "XdXac".
    tok = BPETokenizer.train("aaabdaaabac", 256 + 3, pattern=r"[\s\S]+")
    a, b, c, d = b"abcd"
    Z, Y, X = 256, 257, 258
    assert tok.merges == [(a, a), (a, b), (Z, Y)]
    assert [tok.vocab[i] for i in (Z, Y, X)] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac") == [X, d, X, a, c]
    assert tok.vocab_size == 259


def _hf_merges(text: str, pattern: str, vocab_size: int) -> list[tuple[bytes, bytes]]:
    """HuggingFace's BPE trainer on our chunks. Each byte b is written as the character
    U+0100 + b, so that HF, which numbers its alphabet in character order, gives the bytes
    the ids 0-255 in byte order, as we do; then its tie rule (the smallest pair of ids among
    equal counts) is ours."""
    chunks = [
        "".join(chr(0x100 + b) for b in chunk.encode("utf-8"))
        for chunk in regex.findall(pattern, text)
    ]
    hf = HFTokenizer(BPE())
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # U+0100..U+01FF are not spaces
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=[chr(0x100 + b) for b in range(256)],
        show_progress=False,
        min_frequency=0,
    )
    hf.train_from_iterator([" ".join(chunks)], trainer)
    model = json.loads(hf.to_str())["model"]
    assert model["vocab"][chr(0x100)] == 0 and model["vocab"][chr(0x1FF)] == 255
    as_bytes = lambda s: bytes(ord(c) - 0x100 for c in s)  # noqa: E731
    merges = [m.split(" ") if isinstance(m, str) else m for m in model["merges"]]
    for i, (a, b) in enumerate(merges):  # HF numbers the merged tokens as we do
        assert model["vocab"][a + b] == 256 + i
    return [(as_bytes(a), as_bytes(b)) for a, b in merges]


@pytest.mark.algorithm("alg-bpe-train")
@pytest.mark.parametrize(
    ("pattern", "vocab_size", "size"), [("gpt4", 1024, 110_000), ("gpt2", 700, 60_000)]
)
def test_merges_equal_huggingface_bpe_trainer(pattern, vocab_size, size):
    text = TEXT[:size]
    ours = BPETokenizer.train(text, vocab_size, pattern=pattern)
    theirs = _hf_merges(text, ours.pattern, vocab_size)
    assert len(ours.merges) == vocab_size - 256
    assert [(ours.vocab[a], ours.vocab[b]) for a, b in ours.merges] == theirs


@pytest.mark.algorithm("alg-bpe-train")
def test_ties_go_to_the_smallest_pair_and_match_huggingface():
    # Every pair of "abcd" and of "dcba" occurs once: the first merge is the smallest pair (a, b)
    # by id, then (b, c), ... as in HF.
    text = "abcd dcba xyxy"
    ours = BPETokenizer.train(text, 262, pattern="gpt2")
    assert ours.merges[0] == (ord("x"), ord("y"))  # the only pair that occurs twice
    assert ours.merges[1] == (ord(" "), ord("d"))  # smallest id among the tied pairs
    assert [(ours.vocab[a], ours.vocab[b]) for a, b in ours.merges] == _hf_merges(
        text, ours.pattern, 262
    )


@pytest.mark.algorithm("alg-bpe-train")
def test_training_counts_each_pair_in_the_whole_text_like_a_naive_recount():
    # The incremental counts must pick the same merges as recounting every pair after each
    # merge over the chunk list (the definition of the algorithm).
    text = TEXT[:15000]
    tok = BPETokenizer.train(text, 256 + 60, pattern="gpt4")
    chunks = [list(c.encode("utf-8")) for c in regex.findall(GPT4_SPLIT_PATTERN, text)]
    for i, merge in enumerate(tok.merges):
        counts = {}
        for ids in chunks:
            for pair in itertools.pairwise(ids):
                counts[pair] = counts.get(pair, 0) + 1
        best = min(counts, key=lambda p: (-counts[p], p))
        assert merge == best
        new = 256 + i
        for k, ids in enumerate(chunks):
            out, j = [], 0
            while j < len(ids):
                if j + 1 < len(ids) and (ids[j], ids[j + 1]) == best:
                    out.append(new)
                    j += 2
                else:
                    out.append(ids[j])
                    j += 1
            chunks[k] = out


def test_training_stops_when_no_pair_is_left():
    tok = BPETokenizer.train("ab ab", 300, pattern="gpt2")
    assert tok.merges == [(ord("a"), ord("b")), (ord(" "), 256)]
    assert tok.vocab_size == 258


def test_truncated_is_training_to_the_smaller_size(tok):
    small = BPETokenizer.train(TEXT, 400, special_tokens=())
    assert tok.truncated(400).merges == small.merges
    assert tok.truncated(256).encode(HELD_OUT[:1000]) == list(HELD_OUT[:1000].encode("utf-8"))


def test_compression_curve_is_bytes_per_token_of_each_truncation(tok):
    curve = compression_curve(tok, HELD_OUT)
    assert curve.shape == (len(tok.merges) + 1,)
    for V in (256, 257, 300, 511, 800, 1022):
        assert curve[V - 256] == pytest.approx(bytes_per_token(tok.truncated(V), HELD_OUT))
    assert curve[0] == 1.0 and (curve[1:] >= curve[:-1]).all()  # merges never add tokens
    with pytest.raises(ValueError, match="text must be non-empty"):
        compression_curve(tok, "")


# -- encoding and decoding ----------------------------------------------------------------------


def _tiktoken(tok: BPETokenizer) -> tiktoken.Encoding:
    ranks = {tok.vocab[i]: i for i in range(256 + len(tok.merges))}
    assert len(ranks) == 256 + len(tok.merges)  # no two merges made the same bytes
    return tiktoken.Encoding(
        name="ours", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens
    )


@pytest.mark.algorithm("alg-bpe-encode")
def test_encode_equals_tiktoken_with_the_same_merges(tok):
    enc = _tiktoken(tok)
    rng = random.Random(1)
    texts = [HELD_OUT, TEXT[:30000]] + [random_text(rng, 300) for _ in range(40)]
    for text in texts:
        assert tok.encode(text) == enc.encode(text)
    gpt2_tok = BPETokenizer.train(TEXT[:40000], 600, pattern="gpt2")
    enc2 = _tiktoken(gpt2_tok)
    for text in texts[:12]:
        assert gpt2_tok.encode(text) == enc2.encode(text)


@pytest.mark.algorithm("alg-bpe-encode")
def test_decode_inverts_encode_on_arbitrary_unicode(tok):
    rng = random.Random(2)
    cases = ["", " ", "\n", "   \n\n\t ", "👩\u200d👩\u200d👧\u200d👦", "a\u0301\u0302"]
    cases += [random_text(rng, rng.randrange(1, 120)) for _ in range(400)]
    for text in cases:
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    assert tok.encode("") == []


@pytest.mark.algorithm("alg-bpe-encode")
def test_decode_of_a_cut_character_gives_the_replacement_character(tok):
    ids = tok.encode("€")  # three bytes E2 82 AC
    assert tok.decode([0xE2]) == "\ufffd"
    assert tok.decode(ids) == "€"
    assert bytes_per_token(tok, "€") == 3 / len(ids)


@pytest.mark.algorithm("alg-bpe-encode")
def test_special_tokens(tok):
    eot, pad = tok.special_tokens["<|endoftext|>"], tok.special_tokens["<|pad|>"]
    assert (eot, pad) == (256 + len(tok.merges), 257 + len(tok.merges)) == (1022, 1023)
    assert tok.vocab_size == 1024
    text = "def f():<|endoftext|>return 1<|pad|>"
    enc = _tiktoken(tok)
    ids = tok.encode(text, allowed_special="all")
    assert ids == enc.encode(text, allowed_special="all")
    assert ids.count(eot) == 1 and ids.count(pad) == 1
    assert tok.decode(ids) == text
    ordinary = tok.encode(text, allowed_special="none")
    assert ordinary == enc.encode_ordinary(text) and eot not in ordinary
    assert tok.decode(ordinary) == text
    only = tok.encode("x<|endoftext|>y", allowed_special={"<|endoftext|>"})
    assert only == enc.encode("x<|endoftext|>y", allowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError, match=r"special token '<\|pad\|>'"):
        tok.encode(text, allowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'"):
        tok.encode(text)
    with pytest.raises(ValueError, match="unknown special tokens"):
        tok.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special must be"):
        tok.encode(text, allowed_special="some")


def test_save_and_load_round_trip(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    for loaded in (BPETokenizer.load(path), load_tokenizer(path), Tokenizer.load(path)):
        assert isinstance(loaded, BPETokenizer)
        assert loaded.merges == tok.merges and loaded.pattern == tok.pattern
        assert loaded.special_tokens == tok.special_tokens and loaded.vocab == tok.vocab
        text = HELD_OUT[:3000] + "<|endoftext|>"
        assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temporary file left


def test_load_rejects_bad_files(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read a tokenizer"):
        load_tokenizer(path)
    path.write_text(json.dumps({"kind": "spam", "version": 1}))
    with pytest.raises(ValueError, match="'kind' is 'spam'"):
        load_tokenizer(path)
    path.write_text(json.dumps({"kind": "bpe", "version": 1, "pattern": "gpt2",
                                "merges": [[256, 1]], "special_tokens": []}))  # fmt: skip
    with pytest.raises(ValueError, match=r"merge 0 joins ids \(256, 1\)"):
        load_tokenizer(path)
    CharTokenizer.train("abc").save(path)
    with pytest.raises(ValueError, match="holds a 'char' tokenizer, not a 'bpe' one"):
        BPETokenizer.load(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_tokenizer(tmp_path / "missing.json")


def test_errors_name_the_argument_and_range(tok):
    with pytest.raises(ValueError, match=r"vocab_size must be an integer in \[256, "):
        BPETokenizer.train("hello", 255)
    with pytest.raises(ValueError, match=r"vocab_size must be an integer in \[257, "):
        BPETokenizer.train("hello", 256, special_tokens=("<|endoftext|>",))
    with pytest.raises(ValueError, match="text must be non-empty"):
        BPETokenizer.train("", 300)
    with pytest.raises(ValueError, match="given twice"):
        BPETokenizer.train("hello", 300, special_tokens=("<|a|>", "<|a|>"))
    with pytest.raises(ValueError, match="non-empty strings"):
        BPETokenizer.train("hello", 300, special_tokens=("",))
    with pytest.raises(ValueError, match=r"id 1024 is not in \[0, 1024\)"):
        tok.decode([1, 1024])
    with pytest.raises(ValueError, match=r"id -1 is not in \[0, 1024\)"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="pattern is not a valid regular expression"):
        BPETokenizer.train("hello", 300, pattern="(")
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(b"bytes")


# -- the character tokenizer --------------------------------------------------------------------


def test_char_tokenizer(tmp_path):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
    tok = CharTokenizer.train(text)
    chars = sorted(set(text))
    assert tok.vocab_size == len(chars) and tok.chars == "".join(chars)
    assert tok.encode("speak") == [chars.index(c) for c in "speak"]
    assert tok.decode(tok.encode(text)) == text
    assert CharTokenizer.from_text(text).chars == tok.chars
    tok.save(tmp_path / "c.json")
    loaded = load_tokenizer(tmp_path / "c.json")
    assert isinstance(loaded, CharTokenizer) and loaded.chars == tok.chars
    assert isinstance(tok, Tokenizer)
    with pytest.raises(ValueError, match="character '€' is not in"):
        tok.encode("speak €")
    with pytest.raises(ValueError, match=r"id 99 is not in \[0, 27\)"):
        tok.decode([99])
    with pytest.raises(ValueError, match="text must be non-empty"):
        CharTokenizer.train("")


# -- WordPiece and the unigram model ------------------------------------------------------------

WORDS = {tuple("hug"): 10, tuple("pug"): 5, tuple("pun"): 12, tuple("bun"): 4, tuple("hugs"): 5}


@pytest.mark.algorithm("alg-wordpiece-score")
def test_wordpiece_score_by_hand():
    # Unit counts: u 36, g 20, s 5, h 15; pairs: ug 20, gs 5, hu 15.
    assert wordpiece_score(20, 36, 20) == pytest.approx(1 / 36)
    scores = merge_scores(WORDS)
    assert scores[("g", "s")] == pytest.approx(5 / (20 * 5))
    assert scores[("u", "g")] == pytest.approx(20 / (36 * 20))
    assert max(scores, key=scores.get) == ("g", "s")
    counts = merge_scores(WORDS, rule="bpe")
    assert max(counts, key=counts.get) == ("u", "g") and counts[("u", "g")] == 20
    with pytest.raises(ValueError, match=r"n_a must be an integer in \[1, "):
        wordpiece_score(1, 0, 3)
    with pytest.raises(ValueError, match="rule must be"):
        merge_scores(WORDS, rule="unigram")


@pytest.mark.algorithm("alg-wordpiece-score")
def test_wordpiece_score_ranks_pairs_by_likelihood_gain_per_occurrence():
    # Exact gain of merging g+s: counts g 20->15, s 5->0, gs 0->5, N 113->108.
    def ll(counts):
        N = sum(counts)
        return sum(n * math.log(n / N) for n in counts)

    others = [15, 36, 17, 16, 4]  # h u p n b
    expected = ll([*others, 15, 5]) - ll([*others, 20, 5])
    assert likelihood_gain(WORDS, ("g", "s")) == pytest.approx(expected, rel=1e-12)
    # When n(ab) is small against n(a), n(b) and N, the gain per merged occurrence is close to
    # ln(N n(ab) / (n(a) n(b))) - 1 = ln(N score) - 1: the score ranks pairs by it.
    rng = random.Random(3)
    words = {tuple(rng.choices("abcdefghijklmnop", k=6)): rng.randrange(1, 50) for _ in range(300)}
    words[tuple("xz")] = 3
    words[tuple("x")] = 30
    words[tuple("z")] = 40
    scores, counts = merge_scores(words), merge_scores(words, rule="bpe")
    N = sum(len(w) * n for w, n in words.items())
    for pair in [("x", "z"), ("a", "b"), ("c", "d"), ("h", "h"), ("p", "a")]:
        per_occurrence = likelihood_gain(words, pair) / counts[pair]
        assert per_occurrence == pytest.approx(math.log(N * scores[pair]) - 1, abs=0.1)
    # The first-order formula never overestimates the exact gain of a pair a != b, and is far
    # off when the pair is most of the occurrences of its units (the chapter's "at": 110 of
    # 180 a's and t's; exact +23.9 nats, formula about -51).
    chapter = {tuple(w): n for w, n in
               {"tea": 40, "eat": 40, "ate": 40, "at": 30, "ta": 30, "ox": 12}.items()}  # fmt: skip
    for case in (words, WORDS, chapter):
        scores, counts = merge_scores(case), merge_scores(case, rule="bpe")
        N = sum(len(w) * n for w, n in case.items())
        for (a, b), k in counts.items():
            if a != b:
                first_order = k * (math.log(N * scores[a, b]) - 1)
                assert likelihood_gain(case, (a, b)) >= first_order - 1e-9
    gain = likelihood_gain(chapter, ("a", "t"))
    assert gain == pytest.approx(23.87, abs=0.01)
    assert 110 * (math.log(504 * 110 / 180**2) - 1) < -50


@pytest.mark.algorithm("alg-unigram-viterbi")
def test_unigram_segment_is_the_best_of_all_splits():
    rng = random.Random(4)
    vocab = ["a", "b", "c", "ab", "bc", "abc", "ca", "cab", "bb"]
    log_probs = {piece: math.log(rng.uniform(0.01, 1)) for piece in vocab}
    for _ in range(50):
        text = "".join(rng.choice("abc") for _ in range(rng.randrange(1, 9)))
        pieces, lp = unigram_segment(text, log_probs)
        assert "".join(pieces) == text
        best = -math.inf
        for cuts in itertools.product([0, 1], repeat=len(text) - 1):  # every split
            bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [len(text)]
            split = [text[i:j] for i, j in itertools.pairwise(bounds)]
            if all(s in log_probs for s in split):
                best = max(best, sum(log_probs[s] for s in split))
        assert lp == pytest.approx(best, rel=1e-12)
        assert sum(log_probs[p] for p in pieces) == pytest.approx(lp, rel=1e-12)
    with pytest.raises(ValueError, match="cannot be split"):
        unigram_segment("abd", log_probs)


# -- the chapter's exercises and demo -----------------------------------------------------------


def test_exercise_answers():
    from chapters import run_solution

    chapter = "pretraining/tokenization.md"
    ns = run_solution(chapter, "ex-tokenization-bytes")
    assert (ns["answer"], ns["characters"]) == (11, 7)
    ns = run_solution(chapter, "ex-tokenization-bpe")
    assert ns["answer"] == ["es", "est", " l", "ow"]
    ns = run_solution(chapter, "ex-tokenization-wordpiece")
    assert (ns["bpe_pick"], ns["wordpiece_pick"], ns["best_gain"]) == (
        ("u", "g"), ("g", "s"), ("u", "g")
    )  # fmt: skip
    assert ns["gains"][("u", "g")] == pytest.approx(28.018, abs=1e-3)
    assert ns["gains"][("g", "s")] == pytest.approx(9.231, abs=1e-3)
    per_occurrence = {pair: g / ns["counts"][pair] for pair, g in ns["gains"].items()}
    assert max(per_occurrence, key=per_occurrence.get) == ("g", "s")
    ns = run_solution(chapter, "ex-tokenization-embedding")
    assert (ns["small"], ns["large"]) == (262_144_000, 1_048_576_000)
    assert ns["extra_chars"] == pytest.approx(6307.84)


def test_vocabulary_size_demo_moves_the_marker_and_the_split():
    from llmtrain.demos.pretraining.tokenization import SENTENCE, vocabulary_size_demo

    demo = vocabulary_size_demo(max_vocab=600)
    first = demo.png()
    demo.set(vocab_size=256)
    assert demo.png() != first
    assert demo.result.bytes_per_token == 1.0
    assert "".join(demo.result.tokens) == SENTENCE
    assert len(demo.result.tokens) == len(SENTENCE.encode())
    demo.set(vocab_size=500)
    tok = BPETokenizer.train(python_source(), 600).truncated(500)
    assert demo.result.bytes_per_token == pytest.approx(bytes_per_token(tok, HELD_OUT))
    assert len(demo.result.tokens) == len(tok.encode(SENTENCE))
    marker = demo.figure.axes[0].lines[1]
    assert list(marker.get_xdata()) == [500]


def test_vocabulary_size_demo_after_moves_draws_what_a_fresh_demo_draws():
    from demo_checks import differing_fraction, pixels

    from llmtrain.demos.pretraining.tokenization import vocabulary_size_demo

    moved = vocabulary_size_demo(max_vocab=600)
    moved.png()
    for V in (256, 600, 300, 450):
        moved.set(vocab_size=V)
    fresh = vocabulary_size_demo(max_vocab=600)
    fresh.set(vocab_size=450)
    a, b = pixels(moved), pixels(fresh)
    assert a.shape == b.shape
    assert differing_fraction(a, b) < 1e-3
