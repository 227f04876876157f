"""Packed sequences: many documents in one row of a batch, with no information between them.

A batch of variable-length documents padded to the longest wastes the padding. Packing puts
several documents, each followed by an end-of-sequence token (EOS), into one row of
``block_size`` tokens. Three tensors make a packed row compute exactly what the documents
would compute alone:

* ``document_ids``: which document each token belongs to (its EOS included), -1 on padding;
  the *document causal mask* lets position i attend to j only when both are in the same
  document and j <= i (:func:`document_causal_mask`);
* ``positions``: position ids that restart at 0 where a document starts
  (:func:`packed_positions`), so position embeddings see each document from its beginning;
* ``labels``: the next-token target of each position, ``IGNORE_INDEX`` (-100) where the next
  token belongs to another document or is padding, so no loss crosses a boundary.

Conventions. ``labels`` are aligned with ``ids``: ``labels[b, t]`` is the target of the
prediction made at position t (already shifted), so the loss is
``cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)``. A document's
last token predicts its EOS; the EOS does not predict the first token of the next document
(that label is -100), so the packed loss is the sum of the documents' own losses. Padding is
a "document" of its own (id -1): it attends only to padding, so no row of the mask is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from .._checks import check_int
from .masked_lm import IGNORE_INDEX

__all__ = ["PackedBatch", "document_causal_mask", "pack_documents", "packed_positions"]

#: Document id of padding tokens.
PAD_DOCUMENT = -1


class PackedBatch(NamedTuple):
    """Rows of packed documents; every field has shape ``(rows, block_size)``."""

    ids: torch.Tensor  #: token ids (documents, each followed by EOS, then padding)
    document_ids: torch.Tensor  #: index of the source document in ``docs``; -1 on padding
    positions: torch.Tensor  #: position ids, 0 at the start of each document in a row
    labels: torch.Tensor  #: next-token targets, -100 across documents and on padding

    @property
    def padding(self) -> torch.Tensor:
        """Boolean ``(rows, block_size)``: True on padding tokens."""
        return self.document_ids == PAD_DOCUMENT


def _check_documents(docs) -> list[list[int]]:
    if isinstance(docs, (str, bytes)) or not isinstance(docs, Sequence):
        raise TypeError(f"docs must be a sequence of token-id lists, got {type(docs).__name__}")
    if len(docs) == 0:
        raise ValueError("docs must hold at least one document, got none")
    out = []
    for i, doc in enumerate(docs):
        tokens = doc.tolist() if isinstance(doc, torch.Tensor) else list(doc)
        if len(tokens) == 0:
            raise ValueError(f"docs[{i}] is empty: every document needs at least one token")
        for t in tokens:
            check_int(f"token ids of docs[{i}]", t, 0)
        out.append(tokens)
    return out


def _check_document_ids(document_ids) -> torch.Tensor:
    if not isinstance(document_ids, torch.Tensor):
        raise TypeError(f"document_ids must be a torch tensor, got {type(document_ids).__name__}")
    if (
        document_ids.is_floating_point()
        or document_ids.is_complex()
        or document_ids.dtype == (torch.bool)
    ):
        raise TypeError(f"document_ids must hold integers, got dtype {document_ids.dtype}")
    if document_ids.ndim not in (1, 2) or document_ids.shape[-1] < 1:
        raise ValueError(
            f"document_ids must have shape (T,) or (B, T) with T >= 1, "
            f"got {tuple(document_ids.shape)}"
        )
    return document_ids


def document_causal_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """The document (intra-document) causal mask of packed rows.

    Implements :prf:ref:`alg-sequence-packing`.

    Entry ``[..., i, j]`` is True when positions i and j hold the same document id and
    j <= i. ``document_ids`` of shape ``(T,)`` gives a ``(T, T)`` mask, ``(B, T)`` gives
    ``(B, T, T)``; the mask is the boolean ``attn_mask`` convention of
    ``torch.nn.functional.scaled_dot_product_attention`` (add a head axis with
    ``mask.unsqueeze(1)`` for ``(B, heads, T, T)`` queries). With one document it is
    :func:`llmtrain.objectives.causal_mask`.
    """
    d = _check_document_ids(document_ids)
    T = d.shape[-1]
    same = d.unsqueeze(-1) == d.unsqueeze(-2)
    return same & torch.ones(T, T, dtype=torch.bool, device=d.device).tril()


def packed_positions(document_ids: torch.Tensor) -> torch.Tensor:
    """Position ids that restart at 0 wherever a new document starts in a row.

    Implements :prf:ref:`alg-sequence-packing`.

    A document starts at t = 0 and wherever ``document_ids[..., t]`` differs from
    ``document_ids[..., t - 1]``; the position of a token is its distance from the start of
    its document. Same shape as ``document_ids`` (``(T,)`` or ``(B, T)``), dtype int64.
    """
    d = _check_document_ids(document_ids)
    T = d.shape[-1]
    t = torch.arange(T, device=d.device).expand(d.shape)
    starts = torch.ones(d.shape, dtype=torch.bool, device=d.device)
    starts[..., 1:] = d[..., 1:] != d[..., :-1]
    # The start of the current document is the largest start index at or before t.
    start_of = torch.where(starts, t, torch.zeros_like(t)).cummax(dim=-1).values
    return t - start_of


def _rows_first_fit(lengths: list[int], block_size: int) -> list[list[int]]:
    """Greedy first fit: each document (with its EOS) goes into the first row with room."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i, n in enumerate(lengths):
        for r, room in enumerate(free):
            if n <= room:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(block_size - n)
    return rows


def pack_documents(
    docs, block_size: int, *, eos_id: int, split: bool = False, pad_id: int | None = None
) -> PackedBatch:
    """Pack token-id documents into rows of ``block_size`` tokens, each followed by EOS.

    Implements :prf:ref:`alg-sequence-packing`.

    Parameters
    ----------
    docs : sequence of sequences of int
        The documents as lists (or 1-D tensors) of non-negative token ids; none may be empty.
    block_size : int
        Tokens per row, T >= 2.
    eos_id : int
        The end-of-sequence token appended to every document.
    split : bool
        ``False`` (default): documents are never cut. Each document with its EOS goes whole
        into the first row that has room for it (greedy first fit), so the rows hold whole
        documents in an order that may differ from ``docs``; a document of more than
        ``block_size - 1`` tokens raises ``ValueError``. ``True``: the documents and their
        EOS tokens are concatenated in order and cut into rows of ``block_size`` (the
        GPT-style stream); a document cut at a row boundary continues at the start of the
        next row as a new piece (positions restart at 0, as it cannot see its first part),
        and the last token of a row still predicts the first token of the next row when
        both belong to the same document. Only the last row is padded.
    pad_id : int, optional
        The token written on padding (default: ``eos_id``); padding has document id -1 and
        label -100.

    Returns
    -------
    PackedBatch
        ``ids``, ``document_ids``, ``positions`` and ``labels``, each ``(rows, block_size)``
        int64. ``document_ids`` are indices into ``docs``, so ``ids[document_ids == k]`` is
        document k followed by its EOS.
    """
    docs = _check_documents(docs)
    T = check_int("block_size", block_size, 2)
    eos_id = check_int("eos_id", eos_id, 0)
    pad_id = eos_id if pad_id is None else check_int("pad_id", pad_id, 0)
    if not isinstance(split, bool):
        raise TypeError(f"split must be True or False, got {split!r}")

    # One stream per row (or a single stream cut later), with each token's document id.
    with_eos = [[*doc, eos_id] for doc in docs]
    if split:
        stream = [t for doc in with_eos for t in doc]
        owner = [k for k, doc in enumerate(with_eos) for _ in doc]
        rows = -(-len(stream) // T)
        streams = [(stream, owner)]
    else:
        too_long = [k for k, doc in enumerate(docs) if len(doc) + 1 > T]
        if too_long:
            k = too_long[0]
            raise ValueError(
                f"docs[{k}] has {len(docs[k])} tokens, more than block_size - 1 = {T - 1} "
                f"(a document and its EOS must fit in one row); use split=True to cut it"
            )
        order = _rows_first_fit([len(doc) for doc in with_eos], T)
        streams = [
            ([t for k in r for t in with_eos[k]], [k for k in r for _ in with_eos[k]])
            for r in order
        ]
        rows = len(streams)

    ids = torch.full((rows * T,), pad_id, dtype=torch.long)
    document_ids = torch.full((rows * T,), PAD_DOCUMENT, dtype=torch.long)
    labels = torch.full((rows * T,), IGNORE_INDEX, dtype=torch.long)
    start = 0
    for tokens, owners in streams:
        n = len(tokens)
        x, d = torch.tensor(tokens), torch.tensor(owners)
        ids[start : start + n], document_ids[start : start + n] = x, d
        # Position t predicts token t + 1 only inside its own document.
        same = d[1:] == d[:-1]
        labels[start : start + n - 1] = torch.where(same, x[1:], torch.tensor(IGNORE_INDEX))
        start += T  # the next row (non-split rows are padded to T each)
    ids, document_ids, labels = (z.view(rows, T) for z in (ids, document_ids, labels))
    return PackedBatch(ids, document_ids, packed_positions(document_ids), labels)
