"""The capstone of Part I: SGD, AdamW, Lion and Muon training the book's GPT.

Every run is one call of :func:`~llmtrain.pretraining.cached_pretrain`, the book's one
training loop with ``TrainConfig.optimizer`` set, on the same synthetic text, the same model
and the same number of updates; only the optimizer, its learning rate and the seed change.
Runs are cached on disk under a key of the config, the text and the code, so the sweep trains
once and a rebuild of the book loads it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..._checks import check_int
from ...objectives import DEFAULT_SOURCE, synthetic_corpus
from ...pretraining import TrainConfig, TrainingDiverged, cached_pretrain
from ..demo import Demo, Slider, demo_factory
from ..plots import moving_title

__all__ = [
    "CAPSTONE_CONFIG",
    "LR_REFERENCE",
    "SweepResult",
    "optimizer_capstone_demo",
    "optimizer_sweep",
    "welch_t_test",
]

#: The shared run: a 2-layer character GPT of width 32 and context 32, batches of 16
#: sequences, 150 updates of warmup-cosine; the validation loss from 8 fixed batches.
CAPSTONE_CONFIG = TrainConfig(
    tokenizer="char",
    n_layer=2,
    n_head=2,
    n_embd=32,
    block_size=32,
    batch_size=16,
    max_iters=150,
    warmup_iters=15,
    beta1=0.9,
    beta2=0.99,
    weight_decay=0.1,
    eval_interval=50,
    eval_iters=8,
)

#: The reference rate α_ref of each optimizer (from a coarse one-seed scan); the grid is
#: α_ref · 2^q for q = -1, 0, 1, 2. SGD's α multiplies a momentum sum of about 1/(1 − β₁)
#: gradients, Lion's a sign vector of RMS 1: their good α sit far apart.
LR_REFERENCE = {"sgd": 0.5, "adamw": 0.015, "lion": 0.005, "muon": 0.05}
LR_EXPONENTS = (-1, 0, 1, 2)
SEEDS = (0, 1, 2)
N_CHARS = 20_000


@dataclass
class SweepResult:
    """The runs of :func:`optimizer_sweep`.

    Attributes
    ----------
    optimizers : tuple of str
    exponents : tuple of int
        q of the learning rates α = ``LR_REFERENCE[optimizer]`` · 2^q.
    seeds : tuple of int
    val_loss : ndarray
        Final validation loss, shape (optimizers, exponents, seeds); NaN if the run diverged.
    losses : ndarray
        The training loss of every update, shape (optimizers, exponents, seeds, updates);
        NaN after a divergence.
    lrs : ndarray
        The learning rates, shape (optimizers, exponents).
    floor : float
        The entropy rate of the text, the lowest loss any model can reach.
    """

    optimizers: tuple[str, ...]
    exponents: tuple[int, ...]
    seeds: tuple[int, ...]
    val_loss: np.ndarray
    losses: np.ndarray
    lrs: np.ndarray
    floor: float

    def best(self, optimizer: str) -> int:
        """The index of the exponent with the lowest mean final validation loss."""
        means = self.val_loss[self.optimizers.index(optimizer)].mean(axis=1)
        return int(np.nanargmin(np.where(np.isnan(means), np.inf, means)))

    def table(self) -> list[dict]:
        """One row per optimizer at its best learning rate: mean and standard deviation
        (ddof = 1) of the final validation loss over seeds, best first."""
        rows = []
        for i, name in enumerate(self.optimizers):
            j = self.best(name)
            values = self.val_loss[i, j]
            rows.append(
                {
                    "optimizer": name,
                    "lr": float(self.lrs[i, j]),
                    "mean": float(values.mean()),
                    "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "values": values.copy(),
                }
            )
        return sorted(rows, key=lambda r: r["mean"])


@contextmanager
def _one_thread():
    # Matrices of width 32 are too small for two threads to help; one thread is faster and
    # leaves the other core to the rest of the build.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def optimizer_sweep(
    config: TrainConfig = CAPSTONE_CONFIG,
    *,
    optimizers=tuple(LR_REFERENCE),
    exponents=LR_EXPONENTS,
    seeds=SEEDS,
    n_chars: int = N_CHARS,
) -> SweepResult:
    """Train ``config`` with every optimizer, learning rate α_ref · 2^q and seed, through
    :func:`~llmtrain.pretraining.cached_pretrain` (a run done before is loaded from disk).

    The text is :func:`~llmtrain.objectives.synthetic_corpus` (``n_chars`` characters, seed
    0), the same for every run; the seed changes the initialisation and the batches.
    """
    check_int("n_chars", n_chars, 10 * config.block_size)
    for name in optimizers:
        if name not in LR_REFERENCE:
            raise ValueError(f"optimizers must be among {tuple(LR_REFERENCE)}, got {name!r}")
    if not seeds or not exponents:
        raise ValueError("seeds and exponents must not be empty")
    text = synthetic_corpus(n_chars, seed=0)
    shape = (len(optimizers), len(exponents), len(seeds))
    val_loss = np.full(shape, np.nan)
    losses = np.full((*shape, config.max_iters), np.nan)
    lrs = np.array([[LR_REFERENCE[o] * 2.0**q for q in exponents] for o in optimizers])
    with _one_thread():
        for i, name in enumerate(optimizers):
            for j, lr in enumerate(lrs[i]):
                for s, seed in enumerate(seeds):
                    run = dataclasses.replace(config, optimizer=name, lr=float(lr), seed=seed)
                    try:
                        result = cached_pretrain(text, run)
                    except TrainingDiverged:
                        continue
                    val_loss[i, j, s] = result.val_loss
                    losses[i, j, s] = result.losses
    return SweepResult(
        tuple(optimizers),
        tuple(exponents),
        tuple(seeds),
        val_loss,
        losses,
        lrs,
        DEFAULT_SOURCE.entropy_rate(),
    )


def _t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom (df > 0 real), by Simpson's rule
    on the density over [0, |t|] (the density is smooth and the interval finite)."""
    x = np.linspace(0.0, abs(t), 2001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_c - (df + 1) / 2 * np.log1p(x**2 / df))
    h = x[1] - x[0]
    half = (
        h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    )
    return 0.5 - half if t >= 0 else 0.5 + half


def welch_t_test(a, b) -> tuple[float, float, float]:
    """Welch's two-sample t-test of equal means, without assuming equal variances.

    t_W = (L̄_a − L̄_b) / √(σ̂_a²/n_a + σ̂_b²/n_b), with the Welch-Satterthwaite degrees of
    freedom df_W = (σ̂_a²/n_a + σ̂_b²/n_b)² / ((σ̂_a²/n_a)²/(n_a − 1) + (σ̂_b²/n_b)²/(n_b − 1)),
    where L̄ and σ̂² are the mean and the sample variance (ddof = 1) of each group.
    Returns ``(t_W, df_W, p_W)``, p_W the two-sided p-value from Student's t with df_W (real)
    degrees of freedom: the numbers of ``scipy.stats.ttest_ind(a, b, equal_var=False)``.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or len(a) < 2 or len(b) < 2:
        raise ValueError(f"a and b must be 1-D with at least 2 values, got {a.shape}, {b.shape}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        raise ValueError("a and b have no spread: the t statistic is undefined")
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(t), float(df), float(2 * _t_sf(abs(t), df))


def _smooth(x: np.ndarray, width: int = 10) -> np.ndarray:
    """A trailing moving average of the batch losses, to show the trend through the noise."""
    c = np.cumsum(np.insert(x, 0, 0.0))
    out = np.empty_like(x)
    n = np.arange(1, len(x) + 1)
    lo = np.maximum(n - width, 0)
    out[:] = (c[n] - c[lo]) / (n - lo)
    return out


@lru_cache(maxsize=4)
def _sweep(config_json: str, optimizers, exponents, seeds, n_chars) -> SweepResult:
    # Keyed by the config as JSON: a TrainConfig is mutable, hence not hashable.
    return optimizer_sweep(
        TrainConfig(**json.loads(config_json)),
        optimizers=optimizers,
        exponents=exponents,
        seeds=seeds,
        n_chars=n_chars,
    )


@demo_factory
def optimizer_capstone_demo(
    config: TrainConfig = CAPSTONE_CONFIG,
    *,
    optimizers=tuple(LR_REFERENCE),
    exponents=LR_EXPONENTS,
    seeds=SEEDS,
    n_chars: int = N_CHARS,
) -> Demo:
    """The precomputed sweep of :func:`optimizer_sweep`: final validation loss against the
    learning rate for each optimizer (mean and seed spread), and the training curves of
    every seed at the learning rate the slider picks, α = α_ref · 2^q."""
    config_json = json.dumps(config.to_dict(), sort_keys=True)
    sweep = _sweep(config_json, tuple(optimizers), tuple(exponents), tuple(seeds), n_chars)
    colors = {name: f"C{i}" for i, name in enumerate(LR_REFERENCE)}

    def compute(q):
        return sweep.exponents.index(int(q))

    def draw(fig, j, **_):
        lr_ax, curve_ax = fig.subplots(1, 2)
        ks = np.array(sweep.exponents)
        for i, name in enumerate(sweep.optimizers):
            values = sweep.val_loss[i]
            mean, std = values.mean(axis=1), values.std(axis=1, ddof=1)
            lr_ax.errorbar(
                ks,
                mean,
                yerr=std,
                fmt="-o",
                ms=4,
                capsize=3,
                color=colors[name],
                label=f"{name} (α_ref {LR_REFERENCE[name]:g})",
            )
        lr_ax.set_xticks(ks)
        lr_ax.axhline(sweep.floor, color="black", linestyle="--", linewidth=0.8)
        marker = lr_ax.axvline(ks[j], color="gray", linewidth=1.5, alpha=0.6)
        lr_ax.set_xlabel("q, learning rate α = α_ref · 2^q (dashed: entropy floor)")
        lr_ax.set_ylabel("final validation loss (nats per char)")
        top = np.nanmax(sweep.val_loss) if np.isfinite(sweep.val_loss).any() else 3.0
        lr_ax.set_ylim(sweep.floor - 0.05, min(top + 0.05, 3.0))
        lr_ax.grid(alpha=0.3)
        lr_ax.legend(fontsize=7)

        steps = np.arange(1, sweep.losses.shape[-1] + 1)
        lines = {}
        for name in sweep.optimizers:
            lines[name] = [
                curve_ax.plot(
                    [],
                    [],
                    color=colors[name],
                    linewidth=1,
                    alpha=0.7,
                    label=name if s == 0 else None,
                )[0]
                for s in range(len(sweep.seeds))
            ]
        curve_ax.axhline(sweep.floor, color="black", linestyle="--", linewidth=0.8)
        curve_ax.set_xlim(1, steps[-1])
        curve_ax.set_ylim(sweep.floor - 0.1, 3.5)
        curve_ax.set_xlabel("update t (training loss, moving average of 10)")
        curve_ax.set_ylabel("training loss (nats per char)")
        curve_ax.grid(alpha=0.3)
        curve_ax.legend(fontsize=7, loc="upper right")
        title = moving_title(curve_ax, fontsize=9)

        def update(j, **_):
            marker.set_xdata([ks[j]] * 2)
            for i, name in enumerate(sweep.optimizers):
                for s, line in enumerate(lines[name]):
                    line.set_data(steps, _smooth(sweep.losses[i, j, s]))
            title.set_text(
                f"q = {ks[j]}: every optimizer at α_ref · {2.0 ** ks[j]:g}, "
                f"{len(sweep.seeds)} seeds each"
            )

        update(j)
        return update

    return Demo(
        compute,
        draw,
        [
            Slider(
                "q", min(exponents), max(exponents), 0, integer=True, label="q in α = α_ref · 2^q"
            ),
        ],
        figsize=(10.0, 3.8),
        alt=(
            "Left: the final validation loss against q, for a learning rate α = α_ref · 2^q, of "
            "SGD, AdamW, Lion and Muon (mean and spread over seeds), with the entropy floor "
            "dashed and a grey line at the chosen q; right: the smoothed training-loss curves of "
            "every seed of each optimizer at that learning rate. The slider sets q."
        ),
    )
