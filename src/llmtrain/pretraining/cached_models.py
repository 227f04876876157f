"""Trained models kept on disk: train once, load ever after.

Later chapters need a trained GPT to sample from, inspect or fine-tune, and training one again
on every build of the book would cost minutes. :func:`cached_pretrain` trains with
:func:`~llmtrain.pretraining.pretrain` and stores the result under a key that hashes
everything the weights depend on: the config, the training text, the code of the modules
that build and train the model (without comments and docstrings) and the versions of PyTorch
and NumPy. The same key
means the same weights (training is deterministic), so loading is as good as training again;
any change to the code or the data gives a new key, and the model is trained afresh.

The cache lives in ``$LLMTRAIN_CACHE`` if set, else ``$XDG_CACHE_HOME/llmtrain``, else
``~/.cache/llmtrain``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .gpt import GPT, GPTConfig
from .tokenizer import Tokenizer, load_tokenizer
from .trainer import TrainConfig, TrainResult, pretrain

__all__ = [
    "DEMO_MODEL_CONFIG",
    "cache_dir",
    "cache_key",
    "cached_json",
    "cached_pretrain",
    "demo_model",
    "source_fingerprint",
    "store_entry",
    "weights_digest",
]

_HERE = Path(__file__).resolve().parent
_TOKENIZER_SOURCES = {"char": "char_tokenizer.py", "bpe": "bpe.py"}


def _sources(config: TrainConfig) -> list[Path]:
    """The modules whose code decides the weights of a model trained with ``config``."""
    names = ("gpt.py", "trainer.py", "tokenizer.py", _TOKENIZER_SOURCES[config.tokenizer])
    return [_HERE / n for n in names] + sorted((_HERE.parent / "optim").glob("*.py"))


#: The preset behind :func:`demo_model`: a small character-level GPT (2 layers, width 128,
#: context 64) trained for 600 updates on the standard library's docstrings.
DEMO_MODEL_CONFIG = TrainConfig(
    tokenizer="char",
    n_layer=2,
    n_head=4,
    n_embd=128,
    block_size=64,
    batch_size=16,
    max_iters=600,
    lr=5e-3,
    warmup_iters=30,
    beta2=0.99,
    eval_interval=100,
    eval_iters=10,
    sample_every=200,
    sample_tokens=200,
)


def cache_dir() -> Path:
    """The cache directory: ``$LLMTRAIN_CACHE``, else ``$XDG_CACHE_HOME/llmtrain``, else
    ``~/.cache/llmtrain``."""
    if os.environ.get("LLMTRAIN_CACHE"):
        return Path(os.environ["LLMTRAIN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmtrain"


def source_fingerprint(path: Path) -> bytes:
    """The code of a Python file without its comments and docstrings (its syntax tree): a
    change to the text that explains the code leaves a cached model's key alone, a change
    to the code itself does not."""
    stat = Path(path).stat()
    return _syntax_tree(str(path), stat.st_mtime_ns, stat.st_size)


# Kept per file version: a chapter computes dozens of keys over the same few files.
@functools.cache
def _syntax_tree(path: str, mtime_ns: int, size: int) -> bytes:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def cache_key(*parts, sources=()) -> str:
    """A cache key: a hash of JSON-serialisable ``parts``, the code of the files ``sources``
    (by :func:`source_fingerprint`) and the versions of PyTorch and NumPy."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
    for path in sources:
        h.update(Path(path).name.encode() + source_fingerprint(Path(path)))
    h.update(f"torch {torch.__version__} numpy {np.__version__}".encode())
    return h.hexdigest()[:24]


def store_entry(entry: Path, write) -> None:
    """Store a cache entry, the directory ``entry``, all at once: ``write(directory)`` fills
    a temporary directory beside it, which is then renamed into place. An interrupted call
    leaves no half-written entry; if another process stored the same entry first, its entry
    is kept (the same key means the same content)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".tmp-"))
    try:
        write(tmp)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process stored the same entry first: keep theirs
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def weights_digest(*models: torch.nn.Module) -> str:
    """A hash of the weights (the state dicts) of ``models``: a key for results computed from
    trained models, which changes whenever any of them is retrained differently."""
    h = hashlib.sha256()
    for model in models:
        for name, tensor in model.state_dict().items():
            h.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def cached_json(name: str, key: str, compute) -> dict:
    """The JSON-serialisable results of ``compute()``, stored in the cache entry
    ``name-key`` (by :func:`store_entry`) on the first call and read from it after: for
    measurements of trained models that take seconds and that the chapter, its demo and its
    tests all need."""
    entry = cache_dir() / f"{name}-{key}"
    if (entry / "results.json").is_file():
        return json.loads((entry / "results.json").read_text(encoding="utf-8"))
    results = compute()
    text = json.dumps(results)
    store_entry(entry, lambda directory: (directory / "results.json").write_text(text, "utf-8"))
    return results


def _key(text: str, config: TrainConfig, tokenizer: Tokenizer | None) -> str:
    state = None if tokenizer is None else tokenizer._state()
    text_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return cache_key(config.to_dict(), text_hash, state, sources=_sources(config))


def _load(path: Path, config: TrainConfig) -> TrainResult:
    state = torch.load(path / "result.pt", map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.eval()
    tokenizer = load_tokenizer(path / "tokenizer.json") if state["has_tokenizer"] else None
    samples = [tuple(s) for s in state["samples"]]
    return TrainResult(model, tokenizer, config, state["log"], state["losses"], samples)


def cached_pretrain(
    text: str, config: TrainConfig, *, tokenizer: Tokenizer | None = None, progress: bool = False
) -> TrainResult:
    """:func:`~llmtrain.pretraining.pretrain` on ``text``, stored on disk under a key of
    the config, the text, the tokenizer, the training code and the library versions: the
    first call trains and stores, later calls load (in well under a second).

    The entry is written into a temporary directory and renamed into place, so an interrupted
    call leaves no half-written entry.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    entry = cache_dir() / _key(text, config, tokenizer)
    if (entry / "result.pt").is_file():
        return _load(entry, config)
    result = pretrain(text, config, tokenizer=tokenizer, progress=progress)

    def write(directory: Path) -> None:
        state = {
            "config": config.to_dict(),
            "model_config": result.model.config.to_dict(),
            "model": result.model.state_dict(),
            "log": result.log,
            "losses": result.losses,
            "samples": [list(s) for s in result.samples],
            "has_tokenizer": result.tokenizer is not None,
        }
        torch.save(state, directory / "result.pt")
        if result.tokenizer is not None:
            result.tokenizer.save(directory / "tokenizer.json")

    store_entry(entry, write)
    return result


def demo_model() -> tuple[GPT, Tokenizer]:
    """A small trained character-level GPT and its tokenizer, for the chapters that need one.

    The model of ``DEMO_MODEL_CONFIG`` (2 layers, width 128, context 64), trained on
    :func:`~llmtrain.pretraining.stdlib_corpus` (the standard library's docstrings, text
    every Python installation has). The first call trains it (well under a minute on two
    cores) and caches it with :func:`cached_pretrain`; later calls load it. Returned in eval
    mode; every call returns a fresh copy, so changing it changes no one else's.
    """
    from .corpora import stdlib_corpus

    result = cached_pretrain(stdlib_corpus(), DEMO_MODEL_CONFIG)
    return result.model, result.tokenizer
