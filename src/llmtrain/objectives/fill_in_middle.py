"""Fill-in-the-middle (FIM): teach a left-to-right model to infill by moving the middle last.

Bavarian et al. (2022) cut a document at two uniformly random points into a prefix, a middle
and a suffix, and rewrite it with three sentinel tokens so that the middle comes last. A
causal model trained on the rewritten document learns to write the middle given both sides,
while the untouched documents keep its left-to-right skill. Two orders are used:

- PSM: ``<PRE> prefix <SUF> suffix <MID> middle``;
- SPM: ``<PRE> <SUF> suffix <MID> prefix middle`` (the paper's variant of SPM, in which the
  prefix runs straight into the middle, so that a token split at the boundary is harmless).
"""

from __future__ import annotations

import torch

from .._checks import check_int, check_real
from ._tokens import as_ids, torch_generator

__all__ = ["fim_format", "fim_transform", "fim_undo"]

MODES = ("psm", "spm")


def _sentinels(prefix_id, suffix_id, middle_id) -> tuple[int, int, int]:
    ids = tuple(
        check_int(name, value, 0)
        for name, value in (
            ("prefix_id", prefix_id),
            ("suffix_id", suffix_id),
            ("middle_id", middle_id),
        )
    )
    if len(set(ids)) != 3:
        raise ValueError(f"prefix_id, suffix_id and middle_id must differ, got {ids}")
    return ids


def _document(ids, sentinels) -> torch.Tensor:
    x = as_ids("ids", ids, ndim=1)
    if torch.isin(x, torch.tensor(sentinels)).any():
        raise ValueError(f"ids must not contain the FIM sentinel ids {sentinels}")
    return x


def fim_format(
    ids, a: int, b: int, *, mode: str, prefix_id: int, suffix_id: int, middle_id: int
) -> torch.Tensor:
    """The FIM rewrite of ``ids`` cut at ``a <= b``: prefix ``ids[:a]``, middle ``ids[a:b]``,
    suffix ``ids[b:]``, in ``mode`` ``"psm"`` or ``"spm"``.

    Implements :prf:ref:`alg-fim-transform`.
    """
    P, S, M = _sentinels(prefix_id, suffix_id, middle_id)
    x = _document(ids, (P, S, M))
    n = x.numel()
    a = check_int("a", a, 0, n)
    b = check_int("b", b, a, n)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    prefix, middle, suffix = x[:a], x[a:b], x[b:]
    tok = lambda *t: torch.tensor(t, dtype=torch.int64)  # noqa: E731
    if mode == "psm":
        return torch.cat([tok(P), prefix, tok(S), suffix, tok(M), middle])
    return torch.cat([tok(P, S), suffix, tok(M), prefix, middle])


def fim_transform(
    ids,
    *,
    prefix_id: int,
    suffix_id: int,
    middle_id: int,
    fim_rate: float = 0.5,
    spm_rate: float = 0.5,
    generator=0,
) -> torch.Tensor:
    """One document after FIM: unchanged with probability ``1 - fim_rate``, otherwise cut at
    two uniform points and rewritten in SPM order (probability ``spm_rate``) or PSM order.

    Implements :prf:ref:`alg-fim-transform`.

    Parameters
    ----------
    ids : 1-D tensor or sequence of int
        The document's tokens (or characters), none equal to a sentinel.
    prefix_id, suffix_id, middle_id : int
        The sentinel ids of ``<PRE>``, ``<SUF>`` and ``<MID>``.
    fim_rate : float
        Probability in [0, 1] of applying the rewrite.
    spm_rate : float
        Probability in [0, 1] that a rewritten document uses SPM rather than PSM.
    generator : int or torch.Generator
        Seed or generator of the random draws.
    """
    sentinels = _sentinels(prefix_id, suffix_id, middle_id)
    x = _document(ids, sentinels)
    ρ = check_real("fim_rate", fim_rate, 0.0, 1.0)
    ρ_spm = check_real("spm_rate", spm_rate, 0.0, 1.0)
    g = torch_generator(generator)
    if torch.rand((), generator=g) >= ρ:
        return x.clone()
    # Two cut points, each uniform on {0, ..., n}; sorted, so any part may be empty.
    a, b = torch.randint(0, x.numel() + 1, (2,), generator=g).sort().values.tolist()
    mode = "spm" if torch.rand((), generator=g) < ρ_spm else "psm"
    return fim_format(
        x, a, b, mode=mode, prefix_id=prefix_id, suffix_id=suffix_id, middle_id=middle_id
    )


def fim_undo(ids, *, prefix_id: int, suffix_id: int, middle_id: int) -> torch.Tensor:
    """The original document from the output of :func:`fim_transform` (either order, or an
    untransformed document, which is returned as is)."""
    P, S, M = _sentinels(prefix_id, suffix_id, middle_id)
    y = as_ids("ids", ids, ndim=1)
    if int(y[0]) != P:
        return _document(y, (P, S, M)).clone()
    s = (y == S).nonzero().flatten()
    m = (y == M).nonzero().flatten()
    if len(s) != 1 or len(m) != 1 or (y == P).sum() != 1 or not 0 < s[0] < m[0]:
        raise ValueError("ids must hold <PRE>, <SUF> and <MID> once each, in that order")
    s, m = int(s[0]), int(m[0])
    # PSM: prefix = y[1:s], suffix = y[s+1:m], middle = y[m+1:].
    # SPM: y[1] is <SUF>, suffix = y[2:m], and y[m+1:] is prefix + middle already.
    # (PSM with an empty prefix reads the same as SPM and gives the same document.)
    return torch.cat([y[1:s], y[m + 1 :], y[s + 1 : m]])
