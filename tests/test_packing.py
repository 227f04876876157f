"""Packed sequences: the document mask against a double loop, packed attention and packed LM
losses against each document run alone, and the packing layout and its errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from llmtrain.objectives import (
    IGNORE_INDEX,
    causal_mask,
    document_causal_mask,
    pack_documents,
    packed_positions,
)

EOS = 0
V = 11  # vocabulary of the tests: 0 is EOS, documents use 1 .. 10


def random_docs(n_docs, max_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (n_docs,), generator=g)
    return [torch.randint(1, V, (int(n),), generator=g).tolist() for n in lengths]


class TinyLM(torch.nn.Module):
    """One attention layer that takes an explicit mask and explicit position ids."""

    def __init__(self, d=16, max_positions=64, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.token = torch.nn.Embedding(V, d)
        self.position = torch.nn.Embedding(max_positions, d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.head = torch.nn.Linear(d, V)
        self.double()

    def forward(self, ids, positions, mask):
        x = self.token(ids) + self.position(positions)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        x = x + F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.head(x)


# --- the mask and the positions ----------------------------------------------------------


@pytest.mark.algorithm("alg-sequence-packing")
@pytest.mark.parametrize("seed", range(4))
def test_document_mask_matches_a_double_loop(seed):
    g = torch.Generator().manual_seed(seed)
    # Sorted random ids with some -1 (padding) at the end, as in a packed row; and unsorted.
    d = torch.randint(-1, 4, (3, 17), generator=g)
    d[0] = d[0].sort().values.roll(-int((d[0] == -1).sum()))
    M = document_causal_mask(d)
    assert M.shape == (3, 17, 17) and M.dtype == torch.bool
    for b in range(3):
        for i in range(17):
            for j in range(17):
                assert M[b, i, j].item() == (d[b, i] == d[b, j] and j <= i)
    assert torch.equal(document_causal_mask(d[1]), M[1])  # (T,) gives (T, T)


@pytest.mark.algorithm("alg-sequence-packing")
def test_one_document_gives_the_causal_mask_and_positions_0_to_T():
    d = torch.full((9,), 4)
    assert torch.equal(document_causal_mask(d), causal_mask(9))
    assert packed_positions(d).tolist() == list(range(9))


@pytest.mark.algorithm("alg-sequence-packing")
@pytest.mark.parametrize("seed", range(4))
def test_positions_match_a_loop(seed):
    g = torch.Generator().manual_seed(seed)
    d = torch.randint(-1, 3, (2, 23), generator=g)
    P = packed_positions(d)
    for b in range(2):
        expected, p = [], 0
        for t in range(23):
            p = 0 if t == 0 or d[b, t] != d[b, t - 1] else p + 1
            expected.append(p)
        assert P[b].tolist() == expected
    assert packed_positions(torch.tensor([5, 5, 2, 2, 2, -1, -1])).tolist() == [0, 1, 0, 1, 2, 0, 1]


# --- packed equals unpacked ----------------------------------------------------------------


@pytest.mark.algorithm("alg-sequence-packing")
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_packed_attention_equals_each_document_alone(dtype, tol):
    docs = random_docs(7, 9, seed=1)
    batch = pack_documents(docs, 16, eos_id=EOS)
    g = torch.Generator().manual_seed(2)
    B, T = batch.ids.shape
    q, k, v = (torch.randn(B, 2, T, 8, generator=g, dtype=dtype) for _ in range(3))
    mask = document_causal_mask(batch.document_ids).unsqueeze(1)  # one mask for all heads
    packed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    plain = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    for n, _ in enumerate(docs):
        b, t = torch.nonzero(batch.document_ids == n, as_tuple=True)
        b = int(b[0])
        alone = F.scaled_dot_product_attention(q[b, :, t], k[b, :, t], v[b, :, t], is_causal=True)
        torch.testing.assert_close(packed[b, :, t], alone, rtol=0, atol=tol)
        if t[0] > 0:  # a document after another one: a plain causal mask contaminates it
            assert (plain[b, :, t] - alone).abs().max() > 1e-3


@pytest.mark.algorithm("alg-sequence-packing")
def test_packed_lm_losses_equal_each_document_alone():
    docs = random_docs(9, 12, seed=3)
    batch = pack_documents(docs, 24, eos_id=EOS)
    model = TinyLM()
    with torch.no_grad():
        logits = model(batch.ids, batch.positions, document_causal_mask(batch.document_ids))
        packed = F.cross_entropy(
            logits.transpose(1, 2), batch.labels, ignore_index=IGNORE_INDEX, reduction="none"
        )
        total = 0.0
        for n, doc in enumerate(docs):
            x = torch.tensor([[*doc, EOS]])  # the document alone, with its EOS
            m = x.shape[1]
            alone_logits = model(x, torch.arange(m)[None], causal_mask(m))
            alone = F.cross_entropy(alone_logits[0, :-1], x[0, 1:], reduction="none")
            b, t = torch.nonzero(batch.document_ids == n, as_tuple=True)
            # Position t of the document predicts its token t + 1; its EOS predicts nothing.
            assert batch.labels[b, t][-1] == IGNORE_INDEX
            assert torch.equal(batch.labels[b, t][:-1], x[0, 1:])
            torch.testing.assert_close(packed[b, t][:-1], alone, rtol=0, atol=1e-12)
            total += alone.sum().item()
        wrong_positions = model(
            batch.ids,
            torch.arange(24).expand(batch.ids.shape),
            document_causal_mask(batch.document_ids),
        )
    counted = batch.labels != IGNORE_INDEX
    assert int(counted.sum()) == sum(len(doc) for doc in docs)
    assert packed[~counted].abs().max() == 0.0
    assert math.isclose(packed.sum().item(), total, rel_tol=1e-12)
    # Without position resets, the later documents see other positions: different losses.
    shifted = F.cross_entropy(wrong_positions.transpose(1, 2), batch.labels, reduction="sum")
    assert abs(shifted.item() - total) > 1e-3


# --- layout --------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-sequence-packing")
@pytest.mark.parametrize("split", [False, True])
def test_every_document_appears_once_followed_by_eos(split):
    docs = random_docs(20, 15, seed=4)
    batch = pack_documents(docs, 16, eos_id=EOS, split=split, pad_id=3)
    assert batch.ids.shape[1] == 16
    for n, doc in enumerate(docs):
        assert batch.ids[batch.document_ids == n].tolist() == [*doc, EOS]
    assert (batch.ids[batch.padding] == 3).all()
    assert (batch.labels[batch.padding] == IGNORE_INDEX).all()
    n_tokens = sum(len(doc) + 1 for doc in docs)
    if split:  # one stream cut into rows: only the last row is padded
        assert batch.ids.shape[0] == math.ceil(n_tokens / 16)
        assert not batch.padding[:-1].any()
    else:  # first fit: no two rows could have been merged
        used = (~batch.padding).sum(dim=1)
        assert all(int(a + b) > 16 for i, a in enumerate(used) for b in used[i + 1 :])


@pytest.mark.algorithm("alg-sequence-packing")
def test_split_rows_continue_the_stream_and_predict_across_the_row_boundary():
    batch = pack_documents([[1, 2, 3], [4, 5, 6, 7, 8, 9]], 4, eos_id=EOS, split=True)
    assert batch.ids.tolist() == [[1, 2, 3, 0], [4, 5, 6, 7], [8, 9, 0, 0]]
    assert batch.document_ids.tolist() == [[0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, -1]]
    assert batch.positions.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 0]]
    # 7 at the end of row 2 predicts 8 at the start of row 3; EOS predicts nothing.
    assert batch.labels.tolist() == [[2, 3, 0, -100], [5, 6, 7, 8], [9, 0, -100, -100]]


@pytest.mark.algorithm("alg-sequence-packing")
def test_first_fit_example():
    batch = pack_documents([[1, 2, 3], [4, 5, 6], [7]], 6, eos_id=EOS)
    assert batch.ids.tolist() == [[1, 2, 3, 0, 7, 0], [4, 5, 6, 0, 0, 0]]
    assert batch.document_ids.tolist() == [[0, 0, 0, 0, 2, 2], [1, 1, 1, 1, -1, -1]]
    assert batch.positions.tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 3, 0, 1]]
    assert batch.labels.tolist() == [[2, 3, 0, -100, 0, -100], [5, 6, 0, -100, -100, -100]]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "docs, kwargs, error, match",
    [
        ([[1, 2], []], {}, ValueError, r"docs\[1\] is empty"),
        ([], {}, ValueError, "at least one document"),
        ("abc", {}, TypeError, "docs must be a sequence"),
        ([[1, 2]], {"block_size": 1}, ValueError, r"block_size must be an integer in \[2, inf\]"),
        ([[1, -2]], {}, ValueError, r"token ids of docs\[0\]"),
        ([[1, 2, 3, 4]], {"block_size": 4}, ValueError, r"docs\[0\] has 4 tokens.*split=True"),
        ([[1]], {"eos_id": -1}, ValueError, "eos_id"),
        ([[1]], {"split": 1}, TypeError, "split"),
    ],
)
def test_bad_inputs_raise_clear_errors(docs, kwargs, error, match):
    kwargs = {"block_size": 8, "eos_id": EOS, **kwargs}
    with pytest.raises(error, match=match):
        pack_documents(docs, **kwargs)


def test_a_document_of_exactly_block_size_minus_one_fits():
    batch = pack_documents([[1, 2, 3]], 4, eos_id=EOS)
    assert batch.ids.tolist() == [[1, 2, 3, 0]]


def test_bad_document_ids_raise():
    with pytest.raises(TypeError, match="document_ids must hold integers"):
        document_causal_mask(torch.zeros(4))
    with pytest.raises(ValueError, match="document_ids must have shape"):
        packed_positions(torch.zeros(2, 2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="document_ids must be a torch tensor"):
        document_causal_mask([0, 0, 1])


# --- chapter and demo ----------------------------------------------------------------------


def test_exercise_packing_pairs_solution():
    from chapters import run_solution

    ns = run_solution("objectives/packing.md", "ex-packing-pairs")
    assert ns["document_pairs"] == 4 * 128 * 129 // 2 == 33024
    assert ns["causal_pairs"] == 512 * 513 // 2
    assert ns["document_pairs"] / ns["causal_pairs"] == pytest.approx(129 / 513)


def test_packing_demo_moves_and_counts_tokens():
    from demo_checks import pixels

    from llmtrain.demos.objectives.packing import packing_demo

    demo = packing_demo()
    before = pixels(demo)
    demo.set(n_docs=12, block_size=10)
    r = demo.result
    assert r.mask.shape == (10, 10)
    assert r.packed_tokens == 10 * r.rows >= r.real_tokens
    assert r.padded_tokens >= r.real_tokens
    assert not (pixels(demo) == before).all()
