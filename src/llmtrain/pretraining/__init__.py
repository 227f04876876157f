"""Part III, Pretraining: the data a model is trained on, its tokenizer, the GPT, the trainer
and text generation.

The GPT, the tokenizer and the trainer defined here are the book's workhorse: Part III's later
chapters and all of Part IV reuse them rather than writing a model of their own.
"""

from .bpe import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    BPETokenizer,
    bytes_per_token,
    compression_curve,
)
from .cached_models import DEMO_MODEL_CONFIG, cache_dir, cached_pretrain, demo_model
from .char_tokenizer import CharTokenizer
from .contamination import NgramOverlap, ngram_overlap, word_ngrams
from .corpora import (
    CODEC_MODULES,
    HELD_OUT_MODULES,
    STDLIB_MODULES,
    TRAINING_MODULES,
    CorpusDocument,
    python_source,
    stdlib_corpus,
    stdlib_documents,
)
from .deduplication import ExactDedup, exact_dedup, normalize_document
from .gpt import GPT, GPTConfig, KVCache, RMSNorm, causal_self_attention, rope_rotate
from .lsh import lsh_candidate_pairs, lsh_probability, lsh_threshold
from .minhash import (
    MERSENNE_61,
    estimated_jaccard,
    jaccard,
    minhash_signature,
    minhash_signatures,
    word_shingles,
)
from .mixtures import LLAMA1_MIXTURE, LLAMA1_TOKENS, MixtureSource, mixture_tokens
from .model_size import FlopsPerToken, ParameterCount, flops_per_token, parameter_count
from .quality_filters import (
    GOPHER_RULES,
    GOPHER_STOP_WORDS,
    QualityVerdict,
    gopher_quality_filter,
)
from .sampling import sample_next_token, sampling_distribution, top_k_filter, top_p_filter
from .tokenizer import Tokenizer, load_tokenizer
from .trainer import (
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    configure_optimizer,
    pretrain,
    read_text_file,
    train_step,
)
from .unigram import unigram_segment
from .wordpiece import likelihood_gain, merge_scores, wordpiece_score

__all__ = [
    "CODEC_MODULES",
    "DEMO_MODEL_CONFIG",
    "GOPHER_RULES",
    "GOPHER_STOP_WORDS",
    "GPT",
    "GPT2_SPLIT_PATTERN",
    "GPT4_SPLIT_PATTERN",
    "HELD_OUT_MODULES",
    "LLAMA1_MIXTURE",
    "LLAMA1_TOKENS",
    "MERSENNE_61",
    "STDLIB_MODULES",
    "TRAINING_MODULES",
    "BPETokenizer",
    "CharTokenizer",
    "CorpusDocument",
    "ExactDedup",
    "FlopsPerToken",
    "GPTConfig",
    "KVCache",
    "MixtureSource",
    "NgramOverlap",
    "ParameterCount",
    "QualityVerdict",
    "RMSNorm",
    "Tokenizer",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "bytes_per_token",
    "cache_dir",
    "cached_pretrain",
    "causal_self_attention",
    "compression_curve",
    "configure_optimizer",
    "demo_model",
    "estimated_jaccard",
    "exact_dedup",
    "flops_per_token",
    "gopher_quality_filter",
    "jaccard",
    "likelihood_gain",
    "load_tokenizer",
    "lsh_candidate_pairs",
    "lsh_probability",
    "lsh_threshold",
    "merge_scores",
    "minhash_signature",
    "minhash_signatures",
    "mixture_tokens",
    "ngram_overlap",
    "normalize_document",
    "parameter_count",
    "pretrain",
    "python_source",
    "read_text_file",
    "rope_rotate",
    "sample_next_token",
    "sampling_distribution",
    "stdlib_corpus",
    "stdlib_documents",
    "top_k_filter",
    "top_p_filter",
    "train_step",
    "unigram_segment",
    "word_ngrams",
    "word_shingles",
    "wordpiece_score",
]
