"""Pretraining data: the stdlib corpus, MinHash, LSH banding, Gopher's rules, exact
deduplication, n-gram contamination and LLaMA-1's mixture."""

import hashlib
import itertools
import math
import sys
import unicodedata
from collections import Counter

import numpy as np
import pytest

from chapters import run_solution
from llmtrain.pretraining import (
    LLAMA1_MIXTURE,
    LLAMA1_TOKENS,
    MERSENNE_61,
    estimated_jaccard,
    exact_dedup,
    gopher_quality_filter,
    jaccard,
    lsh_candidate_pairs,
    lsh_probability,
    lsh_threshold,
    minhash_signature,
    minhash_signatures,
    mixture_tokens,
    ngram_overlap,
    normalize_document,
    stdlib_corpus,
    stdlib_documents,
    word_ngrams,
    word_shingles,
)
from llmtrain.pretraining.minhash import _mulmod

CHAPTER = "pretraining/data.md"


# -- the corpus -----------------------------------------------------------------------------


def test_stdlib_corpus_is_deterministic_real_prose():
    text = stdlib_corpus()
    assert text == stdlib_corpus()
    assert 250_000 < len(text) < 500_000
    assert text.startswith(stdlib_documents()[0].text)
    assert stdlib_corpus(max_chars=1000) == text[:1000]
    assert stdlib_corpus(max_chars=0) == ""
    # English prose: the most common words are the usual English function words.
    words = text.lower().split()
    top = {w for w, _ in Counter(words).most_common(5)}
    assert {"the", "a", "of", "to"} <= top
    names = [d.name for d in stdlib_documents()]
    assert "textwrap.TextWrapper.wrap" in names and len(names) == len(set(names))


@pytest.mark.skipif(sys.version_info[:3] != (3, 11, 7), reason="fingerprint of CPython 3.11.7")
def test_stdlib_corpus_fingerprint_on_the_books_python():
    digest = hashlib.sha256(stdlib_corpus().encode("utf-8")).hexdigest()
    assert digest == "45d97d3bda1b5b8b91a461ae1ba133f84c6ba7493d66b13023da1055ec93bdf7"


def test_stdlib_documents_modules_and_bad_arguments():
    docs = stdlib_documents("modules", ("colorsys", "encodings.cp1252"))
    assert [d.name for d in docs] == ["colorsys", "encodings.cp1252"]
    assert "def rgb_to_hsv" in docs[0].text and "gencodec.py" in docs[1].text
    with pytest.raises(ValueError, match="kind must be"):
        stdlib_documents("pages")
    with pytest.raises(TypeError, match="modules must be a sequence"):
        stdlib_documents("modules", "colorsys")
    with pytest.raises(LookupError, match="no Python source"):
        stdlib_documents("modules", ("no_such_module_xyz",))
    with pytest.raises(ValueError, match=r"max_chars must be an integer in \[0, inf\]"):
        stdlib_corpus(max_chars=-1)


# -- MinHash --------------------------------------------------------------------------------


def test_mulmod_matches_python_integers_at_the_extremes():
    rng = np.random.default_rng(0)
    p = MERSENNE_61
    a = rng.integers(0, p, 2000, dtype=np.uint64)
    x = rng.integers(0, p, 2000, dtype=np.uint64)
    a[:4] = [p - 1, p - 1, 1, 2**32 - 1]
    x[:4] = [p - 1, 2**32, p - 1, 2**32 - 1]
    got = _mulmod(a, x)
    assert [int(v) for v in got] == [int(u) * int(v) % p for u, v in zip(a, x, strict=True)]


def _sets_with_jaccard(intersection, union, offset=0):
    """Two sets of strings with |A ∩ B| = intersection and |A ∪ B| = union."""
    only = union - intersection
    common = [f"c{offset}-{i}" for i in range(intersection)]
    a = common + [f"a{offset}-{i}" for i in range(only // 2)]
    b = common + [f"b{offset}-{i}" for i in range(only - only // 2)]
    return set(a), set(b)


@pytest.mark.algorithm("alg-minhash-signature")
def test_minhash_signature_is_the_minimum_of_the_universal_hashes():
    shingles = {"alpha beta", "beta gamma", "gamma delta"}
    sig = minhash_signature(shingles, 16, seed=3)
    # Reference: the same hash family, with Python's unbounded integers.
    rng = np.random.default_rng(3)
    a = rng.integers(1, MERSENNE_61, size=16, dtype=np.uint64)
    c = rng.integers(0, MERSENNE_61, size=16, dtype=np.uint64)
    xs = [
        int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") % MERSENNE_61
        for s in shingles
    ]
    expected = [
        min((int(ai) * x + int(ci)) % MERSENNE_61 for x in xs) for ai, ci in zip(a, c, strict=True)
    ]
    assert sig.dtype == np.uint64 and [int(v) for v in sig] == expected
    # A text is the set of its shingles; the order of a set does not matter.
    text = "The cat sat on the mat, and the cat was happy."
    assert np.array_equal(minhash_signature(text, 32), minhash_signature(word_shingles(text), 32))
    assert np.array_equal(minhash_signature(text, 32), minhash_signature(text.upper(), 32))
    assert not np.array_equal(minhash_signature(text, 32), minhash_signature(text, 32, seed=1))


@pytest.mark.algorithm("alg-minhash-signature")
@pytest.mark.parametrize("intersection, union", [(10, 100), (50, 100), (90, 100)])
def test_minhash_estimator_is_unbiased_with_binomial_variance(intersection, union):
    a, b = _sets_with_jaccard(intersection, union)
    J = jaccard(a, b)
    assert J == intersection / union == len(a & b) / len(a | b)
    k, seeds = 64, 300
    estimates = np.array(
        [
            estimated_jaccard(minhash_signature(a, k, seed=s), minhash_signature(b, k, seed=s))
            for s in range(seeds)
        ]
    )
    variance = J * (1 - J) / k
    # Mean of 300 estimates: standard error sqrt(variance / 300); allow 4 of them.
    assert abs(estimates.mean() - J) < 4 * math.sqrt(variance / seeds)
    # Sample variance: relative standard error about sqrt(2 / (seeds - 1)); allow 4 of them.
    assert abs(estimates.var(ddof=1) / variance - 1) < 4 * math.sqrt(2 / (seeds - 1))


def test_jaccard_and_shingles_by_hand():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 1.0 and jaccard({1}, set()) == 0.0
    assert word_shingles("A b, c d!", 2) == {"a b", "b c", "c d"}
    assert word_shingles("one two", 5) == {"one two"}
    assert word_shingles("", 5) == set()
    empty = minhash_signature(set(), 8)
    assert np.all(empty == MERSENNE_61)
    with pytest.raises(ValueError, match=r"num_perm must be an integer in \[1, inf\]"):
        minhash_signature("text", 0)
    with pytest.raises(ValueError, match="sig_a and sig_b"):
        estimated_jaccard(np.zeros(3), np.zeros(4))
    assert minhash_signatures(["a b c d e f", "x y z"], 8).shape == (2, 8)


# -- LSH banding ----------------------------------------------------------------------------


def _brute_force_pairs(signatures, bands, rows):
    pairs = set()
    for i, j in itertools.combinations(range(len(signatures)), 2):
        for band in range(bands):
            cols = slice(band * rows, (band + 1) * rows)
            if np.array_equal(signatures[i, cols], signatures[j, cols]):
                pairs.add((i, j))
                break
    return pairs


@pytest.mark.algorithm("alg-lsh-candidates")
@pytest.mark.parametrize("bands, rows", [(1, 1), (4, 2), (8, 3), (2, 12)])
def test_lsh_candidate_pairs_equal_the_brute_force_pairs(bands, rows):
    # Small alphabets make many bands agree, so both sides have plenty of pairs to find.
    rng = np.random.default_rng(bands * 100 + rows)
    signatures = rng.integers(0, 3, size=(40, 24)).astype(np.uint64)
    signatures[5] = signatures[7]  # an exact duplicate is always a candidate
    expected = _brute_force_pairs(signatures, bands, rows)
    got = lsh_candidate_pairs(signatures, bands, rows)
    assert got == expected and (5, 7) in got


@pytest.mark.algorithm("alg-lsh-candidates")
@pytest.mark.parametrize("bands, rows, J", [(8, 4, 0.5), (16, 2, 0.3), (4, 6, 0.8)])
def test_lsh_candidate_rate_matches_the_s_curve(bands, rows, J):
    pairs = 400
    union = 50
    sets = [_sets_with_jaccard(round(J * union), union, offset=i) for i in range(pairs)]
    signatures = minhash_signatures(
        [s for pair in sets for s in pair], bands * rows, seed=bands + rows
    )
    candidates = lsh_candidate_pairs(signatures, bands, rows)
    rate = np.mean([(2 * i, 2 * i + 1) in candidates for i in range(pairs)])
    P = lsh_probability(J, bands, rows)
    assert abs(rate - P) < 4 * math.sqrt(P * (1 - P) / pairs) + 1e-9
    # Sets of different pairs share no element, so (almost) no cross-pair candidates.
    assert sum(j != i + 1 or i % 2 for i, j in candidates) <= 2


def test_s_curve_and_threshold_in_closed_form():
    assert lsh_probability(0.0, 20, 5) == 0.0 and lsh_probability(1.0, 20, 5) == 1.0
    # b = 20, r = 5 (Mining of Massive Datasets, §3.4): s = 0.8 gives 0.99965.
    assert lsh_probability(0.8, 20, 5) == pytest.approx(0.99965, abs=1e-5)
    s = np.linspace(0, 1, 11)
    np.testing.assert_allclose(lsh_probability(s, 4, 3), 1 - (1 - s**3) ** 4)
    assert lsh_threshold(20, 5) == pytest.approx(0.5493, abs=1e-4)
    # One band of r rows: the probability is s^r; b bands of one row: 1 - (1 - s)^b.
    assert lsh_probability(0.6, 1, 3) == pytest.approx(0.216)
    assert lsh_probability(0.6, 3, 1) == pytest.approx(1 - 0.4**3)
    with pytest.raises(ValueError, match="bands \\* rows must be at most"):
        lsh_candidate_pairs(np.zeros((3, 8)), 3, 3)
    with pytest.raises(ValueError, match=r"s must be in \[0, 1\]"):
        lsh_probability(1.5, 2, 2)


# -- Gopher's quality rules -----------------------------------------------------------------

FILLER = "the cat sat on a mat with the dog"  # 9 words, mean length 26 / 9 = 2.9


def _doc(n_words, word="word"):
    """n_words words, two of them stop words, mean length 4."""
    return " ".join(["the", "and"] + [word] * (n_words - 2))


@pytest.mark.algorithm("alg-gopher-quality-filter")
def test_gopher_word_count_bounds():
    assert gopher_quality_filter(_doc(50)).keep
    assert gopher_quality_filter(_doc(49)).failed == ("word_count",)
    assert gopher_quality_filter(_doc(100_000)).keep
    assert gopher_quality_filter(_doc(100_001)).failed == ("word_count",)
    assert gopher_quality_filter("").failed == ("word_count",)


@pytest.mark.algorithm("alg-gopher-quality-filter")
def test_gopher_mean_word_length_bounds():
    # "the" and "and" have 3 letters: the rest set the mean exactly.
    assert gopher_quality_filter(_doc(60, "abc")).keep  # mean 3.0
    short = "the and " + " ".join(["ab"] * 58)  # mean (6 + 116) / 60 < 3
    assert gopher_quality_filter(short).failed == ("mean_word_length",)
    long = "the and " + " ".join(["a" * 10] * 58)  # mean (6 + 580) / 60 = 9.77
    assert gopher_quality_filter(long).keep
    longer = "the and " + " ".join(["a" * 11] * 58)  # mean 10.73
    assert gopher_quality_filter(longer).failed == ("mean_word_length",)


@pytest.mark.algorithm("alg-gopher-quality-filter")
def test_gopher_symbol_ratio():
    words = _doc(100).split()
    ten_hashes = " ".join(words[:90] + ["#tag"] * 10)  # 10 / 100 = 0.1: kept
    assert gopher_quality_filter(ten_hashes).keep
    eleven = " ".join(words[:89] + ["#tag"] * 11)
    assert gopher_quality_filter(eleven).failed == ("symbol_ratio",)
    ellipses = " ".join(["wait…"] * 11 + words[:89])  # the line does not end with one
    assert gopher_quality_filter(ellipses).failed == ("symbol_ratio",)


@pytest.mark.algorithm("alg-gopher-quality-filter")
def test_gopher_bullet_and_ellipsis_lines():
    line = "the cat and the dog sat down here"  # 8 words
    bullets = "\n".join([f"• {line}"] * 9 + [line])  # 90% bullets: kept
    assert gopher_quality_filter(bullets).keep
    more = "\n".join([f"- {line}"] * 19 + [line])  # 95%
    assert gopher_quality_filter(more).failed == ("bullet_lines",)
    three = "\n".join([f"{line}..."] * 3 + [line] * 7)  # 30% end with an ellipsis: kept
    assert gopher_quality_filter(three).keep
    four = "\n".join([f"{line}…"] * 4 + [line] * 6)  # 40%
    assert gopher_quality_filter(four).failed == ("ellipsis_lines",)


@pytest.mark.algorithm("alg-gopher-quality-filter")
def test_gopher_alphabetic_words_and_stop_words():
    words = _doc(100).split()
    numbers = " ".join(words[:80] + ["1234"] * 20)  # exactly 80% alphabetic: kept
    assert gopher_quality_filter(numbers).keep
    fewer = " ".join(words[:79] + ["1234"] * 21)
    assert gopher_quality_filter(fewer).failed == ("alphabetic_words",)
    one_kind = " ".join(["The"] * 10 + ["word"] * 50)  # one stop word, many times
    assert gopher_quality_filter(one_kind).failed == ("stop_words",)
    two = " ".join(["The,"] + ["word"] * 58 + ["(with)"])  # punctuation and case ignored
    assert gopher_quality_filter(two).keep
    verdict = gopher_quality_filter("### ... 1 2 3")
    assert not verdict and set(verdict.failed) == {
        "word_count",
        "mean_word_length",
        "symbol_ratio",
        "alphabetic_words",
        "stop_words",
    }


# -- exact deduplication --------------------------------------------------------------------


def _reference_dedup(documents):
    """A plain dict keyed by the normalised text itself (no hashing)."""
    first = {}
    for i, d in enumerate(documents):
        first.setdefault(normalize_document(d), i)
    keep = sorted(first.values())
    return keep, {i: first[normalize_document(d)] for i, d in enumerate(documents) if i not in keep}


@pytest.mark.algorithm("alg-exact-dedup")
@pytest.mark.parametrize("seed", range(3))
def test_exact_dedup_matches_a_dict_reference(seed):
    rng = np.random.default_rng(seed)
    base = ["Hello, world!", "Deduplicate me.", "Ein Straße.", "ﬁle name", "x"]
    variants = [
        lambda s: s,
        str.upper,
        lambda s: "  " + s.replace(" ", "\n\t ") + " ",
        lambda s: s.replace(",", "").replace(".", "!"),
        lambda s: s + " extra",
    ]
    documents = [variants[rng.integers(5)](base[rng.integers(5)]) for _ in range(60)]
    result = exact_dedup(documents)
    keep, duplicate_of = _reference_dedup(documents)
    assert result.keep == keep and result.duplicate_of == duplicate_of
    assert len(result.keep) + len(result.duplicate_of) == len(documents)


@pytest.mark.algorithm("alg-exact-dedup")
def test_exact_dedup_normalisation_by_hand():
    docs = ["The ﬁle—is here.", "the file is HERE", "The\u00a0file is here!!", "The files"]
    # NFKC turns the ligature ﬁ into "fi" and the no-break space into a space; case folding
    # and punctuation removal (the em dash is punctuation) do the rest.
    assert unicodedata.normalize("NFKC", "ﬁ") == "fi"
    assert normalize_document(docs[0]) == "the fileis here"
    assert normalize_document(docs[1]) == normalize_document(docs[2]) == "the file is here"
    result = exact_dedup(docs)
    assert result.keep == [0, 1, 3] and result.duplicate_of == {2: 1}
    assert exact_dedup([]).keep == []


# -- contamination --------------------------------------------------------------------------


@pytest.mark.algorithm("alg-ngram-contamination")
def test_ngram_overlap_on_constructed_texts():
    question = "What is the capital of France? The capital of France is Paris, a city on the Seine."
    words = question.lower().replace("?", "").replace(",", "").replace(".", "").split()
    n_grams = len(words) - 13 + 1
    train_clean = "Paris is a large city. France has many cities. " * 5
    train_dirty = "Trivia night. " + question.upper() + " More text follows here."
    clean = ngram_overlap(question, train_clean)
    assert clean.test_ngrams == n_grams and clean.fraction == 0.0 and not clean.dirty
    dirty = ngram_overlap(question, [train_clean, train_dirty])
    assert dirty.dirty and dirty.fraction == 1.0
    # Half the question quoted: the shared 13-grams are those inside the quoted words.
    half = " ".join(words[:15])
    partial = ngram_overlap(question, half)
    assert len(partial.shared) == 15 - 13 + 1
    assert partial.fraction == pytest.approx(3 / n_grams)
    # An n-gram does not run across two training texts.
    split = [" ".join(words[:10]), " ".join(words[10:])]
    assert not ngram_overlap(question, split).dirty
    # A paraphrase shares no 13-gram: what n-gram overlap cannot see.
    paraphrase = "Paris, on the Seine, is the French capital city, as every atlas says."
    assert ngram_overlap(question, paraphrase).fraction == 0.0
    assert ngram_overlap("too short", "too short").test_ngrams == 0
    assert word_ngrams("A-b c", 2) == {("a", "b"), ("b", "c")}
    # Unlike GPT-3, which deletes punctuation inside a word, "don't" is two words here.
    assert word_ngrams("Don't stop", 1) == {("don",), ("t",), ("stop",)}


# -- the mixture ----------------------------------------------------------------------------


def test_llama1_mixture_as_published():
    table = {s.name: (s.proportion, s.epochs, s.disk_gb) for s in LLAMA1_MIXTURE}
    assert table["CommonCrawl"] == (0.67, 1.10, 3300.0)
    assert table["C4"] == (0.15, 1.06, 783.0)
    assert table["Wikipedia"] == (0.045, 2.45, 83.0)
    assert sum(s.proportion for s in LLAMA1_MIXTURE) == pytest.approx(1.0)
    assert LLAMA1_TOKENS["7B"] == LLAMA1_TOKENS["13B"] == 1.0e12
    assert LLAMA1_TOKENS["33B"] == LLAMA1_TOKENS["65B"] == 1.4e12
    assert mixture_tokens(1.4e12)["C4"] == pytest.approx(0.21e12)


# -- the demo -------------------------------------------------------------------------------


def test_minhash_bands_demo_measures_the_s_curve_on_real_pairs():
    from demo_checks import differing_fraction, pixels

    from llmtrain.demos.pretraining.pretraining_data import edited_pairs, minhash_bands_demo

    pairs = edited_pairs()
    assert pairs.signatures.shape == (2 * len(pairs.J), 400)
    assert pairs.J.min() < 0.1 and pairs.J.max() > 0.9  # similarities spread over [0, 1]
    demo = minhash_bands_demo()
    before = pixels(demo)
    for bands, rows in [(20, 5), (8, 10), (40, 2)]:
        demo.set(bands=bands, rows=rows)
        result = demo.result
        assert (result.bands, result.rows) == (bands, rows)
        # Over all 300 pairs, the number of candidates matches the S-curve's expectation.
        P = lsh_probability(result.J, bands, rows)
        assert abs(result.candidate.sum() - P.sum()) < 4 * math.sqrt((P * (1 - P)).sum()) + 1
    assert differing_fraction(before, pixels(demo)) > 0.005
    with pytest.raises(ValueError, match=r"bands must be an integer in \[1, 40\]"):
        demo.set(bands=41)


# -- the chapter's exercises ----------------------------------------------------------------


def test_exercise_bands_and_rows():
    ns = run_solution(CHAPTER, "ex-data-bands-rows")
    assert (ns["bands"], ns["rows"]) == (16, 8)
    assert ns["missed"] == pytest.approx((1 - 0.8**8) ** 16)
    assert ns["missed"] == pytest.approx(0.053, abs=1e-3)
    assert ns["false_candidate"] == pytest.approx(0.0607, abs=1e-4)


def test_exercise_signature_length():
    ns = run_solution(CHAPTER, "ex-data-signature-length")
    assert (ns["worst"], ns["near_09"]) == (2500, 900)


def test_exercise_bytes_per_token():
    ns = run_solution(CHAPTER, "ex-data-bytes-per-token")
    assert ns["bytes_per_token"]["Wikipedia"] == pytest.approx(83e9 / (0.045 * 1.4e12 / 2.45))
    assert ns["bytes_per_token"]["Wikipedia"] == pytest.approx(3.23, abs=0.01)
    assert ns["bytes_per_token"]["CommonCrawl"] == pytest.approx(3.87, abs=0.01)


def test_exercise_gopher_rules():
    ns = run_solution(CHAPTER, "ex-data-gopher")
    assert ns["answer"] == ("symbol_ratio", "bullet_lines", "alphabetic_words", "stop_words")
