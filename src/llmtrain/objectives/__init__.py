"""Part II, Objectives: the losses a language model is trained to minimise."""

from .attention_masks import (
    EncoderDecoderMasks,
    causal_mask,
    encoder_decoder_masks,
    prefix_lm_mask,
)
from .bart_noise import (
    Infilled,
    document_rotation,
    sentence_permutation,
    text_infilling,
    token_deletion,
    token_masking,
)
from .language_modelling import (
    BigramLM,
    LMRun,
    arithmetic_decode,
    arithmetic_encode,
    bits_per_byte,
    bits_per_character,
    causal_lm_loss,
    code_length,
    generate,
    perplexity,
    shift_tokens,
    train_bigram_lm,
)
from .losses import (
    binary_log_loss,
    cross_entropy,
    distribution_cross_entropy,
    entropy,
    hinge_loss,
    kl_divergence,
    log_softmax,
    logsumexp,
    ranking_hinge_loss,
    softmax,
    squared_error,
)
from .masked_lm import IGNORE_INDEX, SentencePair, mask_tokens, masked_epochs, nsp_pairs
from .objective_comparison import ObjectiveCurves, TinyTransformer, compare_objectives
from .span_noise import (
    noise_span_counts,
    random_spans_noise_mask,
    span_corruption,
    undo_span_corruption,
)
from .synthetic_text import (
    DEFAULT_SOURCE,
    CharVocab,
    MarkovSource,
    random_windows,
    synthetic_corpus,
)

__all__: list[str] = []
__all__ += ["DEFAULT_SOURCE", "CharVocab", "MarkovSource", "random_windows", "synthetic_corpus"]
__all__ += [
    "binary_log_loss",
    "cross_entropy",
    "distribution_cross_entropy",
    "entropy",
    "hinge_loss",
    "kl_divergence",
    "log_softmax",
    "logsumexp",
    "ranking_hinge_loss",
    "softmax",
    "squared_error",
]
__all__ += [
    "BigramLM",
    "LMRun",
    "arithmetic_decode",
    "arithmetic_encode",
    "bits_per_byte",
    "bits_per_character",
    "causal_lm_loss",
    "code_length",
    "generate",
    "perplexity",
    "shift_tokens",
    "train_bigram_lm",
]
__all__ += [
    "IGNORE_INDEX",
    "EncoderDecoderMasks",
    "Infilled",
    "ObjectiveCurves",
    "SentencePair",
    "TinyTransformer",
    "causal_mask",
    "compare_objectives",
    "document_rotation",
    "encoder_decoder_masks",
    "mask_tokens",
    "masked_epochs",
    "noise_span_counts",
    "nsp_pairs",
    "prefix_lm_mask",
    "random_spans_noise_mask",
    "sentence_permutation",
    "span_corruption",
    "text_infilling",
    "token_deletion",
    "token_masking",
    "undo_span_corruption",
]
