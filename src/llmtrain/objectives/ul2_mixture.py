"""UL2's mixture of denoisers: span corruption and the prefix LM as one family.

Tay et al. (2023) describe every denoiser by a mean span length μ and a corruption rate r,
and mix seven of them, each announced to the model by a mode token:

- R (regular): T5's span corruption, short spans, r = 15% (μ = 3 and μ = 8);
- X (extreme): long spans or a high rate (μ = 3 and 8 at r = 50%, μ = 64 at 15% and 50%);
- S (sequential): the prefix LM, whose one "span" is the last r = 25% of the sequence.

R and X reuse :func:`llmtrain.objectives.span_corruption`; S is the split of
:func:`llmtrain.objectives.prefix_lm_mask`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from .._checks import check_int, check_real
from ._tokens import as_ids, torch_generator
from .span_noise import span_corruption

__all__ = ["UL2_DENOISERS", "Denoiser", "UL2Example", "ul2_denoise", "ul2_sample"]


@dataclass(frozen=True)
class Denoiser:
    """One UL2 denoiser: its mode (``"R"``, ``"S"`` or ``"X"``), mean span length μ and
    corruption rate r. For S, μ is unused: the single span is the last r of the sequence."""

    mode: str
    mean_span_length: float
    noise_density: float


#: The seven denoisers of UL2 (Tay et al., 2023).
UL2_DENOISERS = (
    Denoiser("R", 3, 0.15),
    Denoiser("R", 8, 0.15),
    Denoiser("S", 0, 0.25),
    Denoiser("X", 3, 0.5),
    Denoiser("X", 8, 0.5),
    Denoiser("X", 64, 0.15),
    Denoiser("X", 64, 0.5),
)


@dataclass(frozen=True)
class UL2Example:
    """An input/target pair; ``inputs[0]`` is the mode token."""

    denoiser: Denoiser
    inputs: torch.Tensor
    targets: torch.Tensor


def ul2_denoise(
    ids,
    denoiser: Denoiser,
    *,
    vocab_size: int,
    mode_ids: Mapping[str, int],
    num_sentinels: int = 100,
    generator=0,
) -> UL2Example:
    """Apply one UL2 denoiser to ``ids`` and prepend its mode token.

    Implements :prf:ref:`alg-ul2-mixture`.

    R and X: :func:`span_corruption` with the denoiser's μ and r (sentinels are the top
    ``num_sentinels`` ids of the vocabulary). S: inputs ``ids[:k]`` and targets ``ids[k:]``
    with ``k = n - round(r n)``, the split of a prefix LM with prefix length k.
    """
    if not isinstance(denoiser, Denoiser) or denoiser.mode not in ("R", "S", "X"):
        raise TypeError(f"denoiser must be a Denoiser with mode R, S or X, got {denoiser!r}")
    V = check_int("vocab_size", vocab_size, 2)
    if not isinstance(mode_ids, Mapping) or set(mode_ids) != {"R", "S", "X"}:
        raise ValueError(f"mode_ids must map 'R', 'S' and 'X' to token ids, got {mode_ids!r}")
    mode = torch.tensor([check_int("mode_ids", mode_ids[denoiser.mode], 0, V - 1)])
    if denoiser.mode == "S":
        x = as_ids("ids", ids, V, ndim=1)
        n = x.numel()
        if n < 2:
            raise ValueError(f"ids must hold at least 2 tokens, got {n}")
        r = check_real("noise_density", denoiser.noise_density, 0.0, 1.0)
        k = n - min(max(round(r * n), 1), n - 1)  # both parts non-empty
        return UL2Example(denoiser, torch.cat([mode, x[:k]]), x[k:].clone())
    inputs, targets = span_corruption(
        ids,
        vocab_size=V,
        noise_density=denoiser.noise_density,
        mean_span_length=denoiser.mean_span_length,
        num_sentinels=num_sentinels,
        generator=generator,
    )
    return UL2Example(denoiser, torch.cat([mode, inputs]), targets)


def ul2_sample(
    ids,
    *,
    vocab_size: int,
    mode_ids: Mapping[str, int],
    denoisers: Sequence[Denoiser] = UL2_DENOISERS,
    weights=None,
    num_sentinels: int = 100,
    generator=0,
) -> UL2Example:
    """Draw a denoiser from the mixture (uniformly, or with ``weights``) and apply it.

    Implements :prf:ref:`alg-ul2-mixture`.
    """
    if len(denoisers) == 0:
        raise ValueError("denoisers must not be empty")
    w = (
        [1.0] * len(denoisers)
        if weights is None
        else [check_real("weights", v, 0.0) for v in weights]
    )
    if len(w) != len(denoisers) or sum(w) <= 0:
        raise ValueError("weights must hold one non-negative weight per denoiser, not all 0")
    g = torch_generator(generator)
    i = int(torch.multinomial(torch.tensor(w, dtype=torch.float64), 1, generator=g))
    return ul2_denoise(
        ids,
        denoisers[i],
        vocab_size=vocab_size,
        mode_ids=mode_ids,
        num_sentinels=num_sentinels,
        generator=g,
    )
