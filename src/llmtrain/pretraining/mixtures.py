"""Data mixtures as published: LLaMA-1's pretraining data (Touvron et al., 2023, Table 1)."""

from __future__ import annotations

from dataclasses import dataclass

from .._checks import check_real

__all__ = ["LLAMA1_MIXTURE", "LLAMA1_TOKENS", "MixtureSource", "mixture_tokens"]


@dataclass(frozen=True)
class MixtureSource:
    """One source of a data mixture: its share of the training tokens, how many passes over
    it training made, and its size on disk as published."""

    name: str
    proportion: float  # sampling proportion, a fraction of the training tokens
    epochs: float  # passes over the source during the 1.4T-token runs
    disk_gb: float  # size on disk in GB (10^9 bytes)


# Table 1 of Touvron et al. (2023). The epochs are for training on 1.4T tokens.
LLAMA1_MIXTURE: tuple[MixtureSource, ...] = (
    MixtureSource("CommonCrawl", 0.670, 1.10, 3300.0),
    MixtureSource("C4", 0.150, 1.06, 783.0),
    MixtureSource("Github", 0.045, 0.64, 328.0),
    MixtureSource("Wikipedia", 0.045, 2.45, 83.0),
    MixtureSource("Books", 0.045, 2.23, 85.0),
    MixtureSource("ArXiv", 0.025, 1.06, 92.0),
    MixtureSource("StackExchange", 0.020, 1.03, 78.0),
)

# Training tokens per model size: 1.4T for the two larger models only.
LLAMA1_TOKENS: dict[str, float] = {"7B": 1.0e12, "13B": 1.0e12, "33B": 1.4e12, "65B": 1.4e12}


def mixture_tokens(total_tokens: float, mixture=LLAMA1_MIXTURE) -> dict[str, float]:
    """Tokens drawn from each source when training on ``total_tokens`` tokens."""
    total_tokens = check_real("total_tokens", total_tokens, 0.0)
    return {s.name: s.proportion * total_tokens for s in mixture}
