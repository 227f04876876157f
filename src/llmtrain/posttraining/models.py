"""The models of Part IV, trained by the package and kept on disk: the base model, and its
fine-tuned versions (full fine-tuning, LoRA, QLoRA).

:func:`base_model` pretrains the book's GPT on the task world's prose
(:func:`~llmtrain.posttraining.pretraining_text`) with Part III's trainer;
:func:`cached_finetune` fine-tunes it on instruction examples with the same trainer. Both are
cached like :func:`~llmtrain.pretraining.cached_pretrain`: under a key of every input (the
configs, the data, the code of the modules involved, the library versions), so a build trains
each model once, and two builds give the same weights.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

from .._checks import check_int, check_real
from .._cores import usable_cores
from .._threads import one_torch_thread
from ..pretraining import (
    GPT,
    BPETokenizer,
    TrainConfig,
    TrainResult,
    cache_dir,
    cached_pretrain,
    configure_optimizer,
    measure_model_states,
)
from ..pretraining.cached_models import _key, cache_key, store_entry
from .chat import chat_tokenizer
from .evaluation import exact_match_by_task
from .lora import apply_lora
from .nf4 import NF4Linear, quantize_linears_nf4
from .sft import FinetuneConfig, PackedExamples, finetune
from .task_world import make_examples, pretraining_text

__all__ = [
    "ADAPTED_MODULES",
    "BASE_MODEL_CONFIG",
    "BOOK_FINETUNES",
    "LORA_CONFIG",
    "LORA_SWEEP_ALPHAS",
    "LORA_SWEEP_CONFIG",
    "LORA_SWEEP_RANKS",
    "LORA_SWEEP_RUNS",
    "SFT_CONFIG",
    "FinetuneRun",
    "base_model",
    "cached_finetune",
    "cached_finetunes",
    "lora_sweep",
    "model_state_bytes",
    "sft_examples",
    "sft_model",
]

_HERE = Path(__file__).resolve().parent
# The modules whose code decides a fine-tuned model's weights (besides those of the base).
_FINETUNE_SOURCES = ("task_world.py", "chat.py", "sft.py", "lora.py", "nf4.py", "models.py")

#: The base model: the book's GPT with RoPE (2 layers, width 128, context 64) on the 259
#: tokens of :func:`~llmtrain.posttraining.chat_tokenizer`, pretrained for 800 updates of
#: 32 windows on :func:`~llmtrain.posttraining.pretraining_text`, the forward pass in
#: bfloat16 (autocast; about a fifth faster than float32 on this book's CPU). Fewer updates
#: (600) left the fine-tuned model unable to reverse most test words in trials.
BASE_MODEL_CONFIG = TrainConfig(
    tokenizer="bpe",
    vocab_size=259,
    n_layer=2,
    n_head=4,
    n_embd=128,
    block_size=64,
    position="rope",
    batch_size=32,
    max_iters=800,
    lr=3e-3,
    warmup_iters=50,
    eval_interval=200,
    eval_iters=5,
    dtype="bfloat16",
)

#: Full fine-tuning: 800 updates of 16 packed rows of 64 tokens, AdamW at 10⁻³ (in trials,
#: 600 updates at 1.5·10⁻³ or 400 at 2·10⁻³ left most reversals of test words unlearned).
SFT_CONFIG = FinetuneConfig(max_iters=800)
#: LoRA and QLoRA: 600 updates at a higher learning rate, 3·10⁻³ (the update B A starts
#: at zero and is a product of two small matrices, which moves slowly at full fine-tuning's
#: rate); 400 updates left the capitals task half learned.
LORA_CONFIG = FinetuneConfig(max_iters=600, lr=3e-3)

#: The layers LoRA and QLoRA adapt: every linear layer of the blocks.
ADAPTED_MODULES = ("c_attn", "c_proj", "c_fc")


def base_model() -> tuple[GPT, BPETokenizer]:
    """The pretrained base model and its tokenizer: trained on first use (under a minute on
    one core), loaded from the cache after. Every call returns a fresh copy."""
    with one_torch_thread():  # the same weights whoever trains first (threads change sums)
        result = cached_pretrain(pretraining_text(), BASE_MODEL_CONFIG, tokenizer=chat_tokenizer())
    return result.model, result.tokenizer


def sft_examples() -> tuple[list, list]:
    """The fine-tuning data: 8,000 instruction examples on the training words, and 200
    validation examples on the test words (a different draw from the test prompts the
    chapters measure accuracy on)."""
    return make_examples("train", 8000), make_examples("test", 200, seed=99)


@dataclass
class FinetuneRun:
    """A fine-tuned model and how it was made.

    Attributes
    ----------
    model : GPT
        The fine-tuned model (with its LoRA layers, if any), in eval mode.
    tokenizer : BPETokenizer
    method : str
        ``"full"``, ``"lora"`` or ``"qlora"``.
    log, losses : list
        The trainer's evaluation records and per-update losses.
    seconds : float
        The training time measured when the run was made (the cache keeps it).
    trainable : int
        The number of trained parameters.
    """

    model: GPT
    tokenizer: BPETokenizer
    method: str
    log: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    trainable: int = 0


def _prepare(model: GPT, method: str, r: int, alpha: float, rslora: bool) -> GPT:
    """The model as the method trains it: as it is (full), with LoRA adapters (lora), or with
    its adapted layers quantised to NF4 first (qlora)."""
    if method == "qlora":
        quantize_linears_nf4(model, ADAPTED_MODULES)
    if method in ("lora", "qlora"):
        apply_lora(model, r, alpha, ADAPTED_MODULES, rslora=rslora)
    return model


@functools.cache  # every fine-tuning run's key needs it
def _sft_data_digest() -> str:
    data = [[asdict(e) for e in part] for part in sft_examples()]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def finetune_key(method: str, config: FinetuneConfig, r: int, alpha: float, rslora: bool) -> str:
    """The cache key of a fine-tuning run: the base model's key, the method, the adapter, the
    config, the data and the code of the modules involved (the runs that start from a
    fine-tuned model build their keys on it)."""
    adapter = {} if method == "full" else {"r": r, "alpha": alpha, "rslora": rslora}
    return cache_key(
        _key(pretraining_text(), BASE_MODEL_CONFIG, chat_tokenizer()),
        [method, adapter, ADAPTED_MODULES, asdict(config), _sft_data_digest()],
        sources=[_HERE / name for name in _FINETUNE_SOURCES],
    )


def _checked_run(
    method: str, config: FinetuneConfig | None, r: int, alpha: float, rslora: bool
) -> tuple[FinetuneConfig, Path]:
    """The run's config (its default filled in) and cache entry, after checking the
    arguments of :func:`cached_finetune`."""
    if method not in ("full", "lora", "qlora"):
        raise ValueError(f"method must be 'full', 'lora' or 'qlora', got {method!r}")
    if config is None:
        config = SFT_CONFIG if method == "full" else LORA_CONFIG
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    check_int("r", r, 1)
    check_real("alpha", alpha, 0.0, low_open=True)
    return config, cache_dir() / f"finetune-{finetune_key(method, config, r, alpha, rslora)}"


def cached_finetune(
    method: str = "full",
    *,
    config: FinetuneConfig | None = None,
    r: int = 32,
    alpha: float = 64.0,
    rslora: bool = False,
) -> FinetuneRun:
    """Fine-tune the base model on :func:`sft_examples` by ``method`` (``"full"``: every
    parameter; ``"lora"``: LoRA adapters of rank ``r`` and scale ``alpha``/r on every
    linear layer of the blocks, the rest frozen; ``"qlora"``: the same on layers stored in
    NF4), cached on disk; the first call trains, later calls load. ``config`` defaults to
    ``SFT_CONFIG`` for full fine-tuning and ``LORA_CONFIG`` for the others.

    The chapters' runs (``BOOK_FINETUNES``) all start from the base model and are needed
    together: on a machine with more than one usable core, the first call for one of them
    trains every one not yet cached, side by side (:func:`cached_finetunes`)."""
    config, entry = _checked_run(method, config, r, alpha, rslora)
    if (
        not (entry / "run.pt").is_file()
        and entry.name in _book_entry_names()
        and usable_cores() > 1
    ):
        cached_finetunes(BOOK_FINETUNES)
    return _finetune(method, config, r, alpha, rslora, entry)


def _finetune(
    method: str, config: FinetuneConfig, r: int, alpha: float, rslora: bool, entry: Path
) -> FinetuneRun:
    """The run of :func:`cached_finetune`, loaded from ``entry`` or trained into it."""
    model, tokenizer = base_model()
    # LoRA's A is drawn at random: from a seeded generator of its own, so that the run is the
    # same whatever the caller drew before (the key cannot see the caller's random state).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        _prepare(model, method, r, alpha, rslora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if (entry / "run.pt").is_file():
        state = torch.load(entry / "run.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        model.eval()
        return FinetuneRun(
            model, tokenizer, method, state["log"], state["losses"], state["seconds"], trainable
        )
    train_examples, val_examples = sft_examples()
    result: TrainResult = finetune(model, tokenizer, train_examples, val_examples, config)
    seconds = result.log[-1]["elapsed_s"]
    state = {
        "model": model.state_dict(),
        "log": result.log,
        "losses": result.losses,
        "seconds": seconds,
    }
    store_entry(entry, lambda directory: torch.save(state, directory / "run.pt"))
    return FinetuneRun(model, tokenizer, method, result.log, result.losses, seconds, trainable)


def _run_arguments(kwargs: Mapping) -> tuple:
    """The arguments of :func:`_finetune` for ``cached_finetune(**kwargs)``, checked."""
    arguments = inspect.signature(cached_finetune).bind(**kwargs)  # unknown names raise
    arguments.apply_defaults()
    options = arguments.arguments
    config, entry = _checked_run(**options)
    return options["method"], config, options["r"], options["alpha"], options["rslora"], entry


def _train_in_worker(arguments: tuple) -> None:
    """A worker process's job for :func:`cached_finetunes`: train one run into the cache."""
    _finetune(*arguments)


def cached_finetunes(runs: Mapping, *, workers: int | None = None) -> dict:
    """:func:`cached_finetune` for each of ``runs`` (a name, any hashable value, -> its
    keyword arguments), the runs not in the cache yet trained side by side first: in
    ``workers`` processes (default: one per CPU core this process may use), each on one
    thread.

    Every run is trained by the same single-threaded code from the same seeds as by
    :func:`cached_finetune` alone, so it gives the same weights: only the waiting is
    shorter. Returns a name -> :class:`FinetuneRun` dictionary, in the order of ``runs``.
    """
    if workers is None:
        workers = usable_cores()
    check_int("workers", workers, 1)
    arguments = {name: _run_arguments(kwargs) for name, kwargs in runs.items()}
    missing = {}  # cache entry -> (an estimate of the run's work, the run's arguments)
    for args in arguments.values():
        config, entry = args[1], args[-1]
        if not (entry / "run.pt").is_file():
            missing[entry] = (config.max_iters * config.batch_size, args)
    missing = sorted(missing.values(), key=lambda job: -job[0])
    if workers > 1 and len(missing) > 1:
        base_model()  # trained here, once, if the workers would each have to train it
        # Longest first (above), so that no worker is left with a long run at the end.
        # Spawned workers: forking a process that has started threads (PyTorch's) can deadlock.
        spawn = get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=spawn) as pool:
            for job in [pool.submit(_train_in_worker, args) for _, args in missing]:
                job.result()
    return {name: _finetune(*args) for name, args in arguments.items()}


def sft_model() -> tuple[GPT, BPETokenizer]:
    """The base model after full supervised fine-tuning (``SFT_CONFIG``), and its
    tokenizer: the instruction-following model of Part IV (trained on first use, with the
    chapters' other fine-tunes if there are cores to spare: :func:`cached_finetune`)."""
    run = cached_finetune("full")
    return run.model, run.tokenizer


# The parameter-efficient fine-tuning chapter: memory measured on the real model, and a sweep
# of LoRA's rank and scale.

#: The sweep over LoRA's rank and α: short runs (200 updates of 8 rows at LoRA's learning
#: rate), one per point of the grid ``LORA_SWEEP_RANKS`` × ``LORA_SWEEP_ALPHAS``.
LORA_SWEEP_CONFIG = FinetuneConfig(max_iters=200, batch_size=8, lr=3e-3, eval_interval=200)
#: The ranks r of the sweep.
LORA_SWEEP_RANKS = (2, 8, 32)
#: The values of α of the sweep, in absolute terms (the update is scaled by α/r).
LORA_SWEEP_ALPHAS = (8.0, 32.0)
#: The sweep's runs: (r, α) -> the arguments of :func:`cached_finetune`.
LORA_SWEEP_RUNS = {
    (r, alpha): {"method": "lora", "config": LORA_SWEEP_CONFIG, "r": r, "alpha": alpha}
    for r in LORA_SWEEP_RANKS
    for alpha in LORA_SWEEP_ALPHAS
}


#: Every fine-tuning run of the base model the chapters use: full fine-tuning (the SFT
#: model), LoRA, QLoRA and the sweep's runs; name -> the arguments of :func:`cached_finetune`.
BOOK_FINETUNES = {
    "full": {"method": "full"},
    "lora": {"method": "lora"},
    "qlora": {"method": "qlora"},
    **{f"lora r={r} alpha={alpha:g}": run for (r, alpha), run in LORA_SWEEP_RUNS.items()},
}


def _book_entry_names() -> set[str]:
    """The names of the cache entries of ``BOOK_FINETUNES``."""
    return {_run_arguments(kwargs)[-1].name for kwargs in BOOK_FINETUNES.values()}


def model_state_bytes(run: FinetuneRun, config: FinetuneConfig) -> dict[str, int]:
    """Bytes of the model states of a fine-tuning run, measured on a copy of its model after
    one training step with the optimizer of ``config`` on one batch of the fine-tuning data.

    ``"weights"`` counts the parameters, trained or frozen, and the buffers of the NF4 layers
    (their codes and quantisation constants, which are what QLoRA stores instead of weights);
    ``"gradients"`` and ``"optimizer"`` are those of
    :func:`~llmtrain.pretraining.measure_model_states`; ``"total"`` is their sum."""
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    model = copy.deepcopy(run.model).train()
    optimizer, _ = configure_optimizer(model, config)
    data = PackedExamples(run.tokenizer, sft_examples()[0], config.block_size)
    model(*data.batch(config.batch_size, torch.Generator().manual_seed(0)))[1].backward()
    optimizer.step()
    states = measure_model_states(model, optimizer)
    nf4 = sum(
        b.numel() * b.element_size()
        for m in model.modules()
        if isinstance(m, NF4Linear)
        for b in m.buffers()
    )
    out = {
        "weights": states["parameters"] + nf4,
        "gradients": states["gradients"],
        "optimizer": states["optimizer"],
    }
    out["total"] = sum(out.values())
    return out


def lora_sweep(examples) -> dict[tuple[int, float], dict]:
    """For each rank r and α of the sweep (``LORA_SWEEP_CONFIG``), the LoRA run's
    exact match on ``examples`` by task (``"accuracy"``), overall (``"overall"``) and its
    number of trained parameters (``"trainable"``). Each run is trained once, two or more
    side by side, and cached (:func:`cached_finetunes`)."""
    runs = cached_finetunes(LORA_SWEEP_RUNS)
    sweep = {}
    for point, run in runs.items():
        by_task = exact_match_by_task(run.model, run.tokenizer, examples)
        counts = {t: sum(e.task == t for e in examples) for t in by_task}
        overall = sum(by_task[t] * counts[t] for t in by_task) / len(examples)
        sweep[point] = {"accuracy": by_task, "overall": overall, "trainable": run.trainable}
    return sweep
