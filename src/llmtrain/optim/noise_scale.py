"""The gradient noise scale and the critical batch size (McCandlish et al., 2018).

Write G = ∇L(θ) for the full gradient and Σ for the covariance of one example's gradient.
A minibatch gradient of B examples drawn with replacement has E‖g_B‖² = ‖G‖² + tr(Σ)/B, so
the noise dominates the signal while B < B_simple = tr(Σ)/‖G‖², the *simple noise scale*.
:func:`simple_noise_scale` computes it exactly from per-example gradients;
:func:`noise_scale_from_two_batches` estimates it, without per-example gradients, from the
squared norms of the gradients of batches of two sizes (their Appendix A.1), and
:func:`measure_noise_scale` does so for a language model. McCandlish et al.'s model of
training predicts the steps S and examples E = BS needed to reach a loss,
S = S_min (1 + B_noise/B) and E = E_min (1 + B/B_noise), which trade off as
(S/S_min − 1)(E/E_min − 1) = 1 (:func:`steps_examples_tradeoff`,
:func:`fit_steps_examples_tradeoff`); the critical batch size is B_crit = E_min/S_min.
:func:`batch_size_warmup` is the batch-size ramp GPT-3 trained with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_int, check_real

__all__ = [
    "NoiseScale",
    "batch_size_warmup",
    "fit_steps_examples_tradeoff",
    "measure_noise_scale",
    "noise_scale_during_training",
    "noise_scale_from_two_batches",
    "simple_noise_scale",
    "steps_examples_tradeoff",
]


@dataclass(frozen=True)
class NoiseScale:
    """Estimates of ‖G‖², tr(Σ) and their ratio B_simple = tr(Σ)/‖G‖².

    Attributes
    ----------
    grad_sq_norm : float
        The estimate of ‖G‖², the squared norm of the full gradient.
    trace : float
        The estimate of tr(Σ), the summed variance of one example's gradient.
    b_simple : float
        trace / grad_sq_norm (inf when ``grad_sq_norm`` ≤ 0: no signal was detected).
    """

    grad_sq_norm: float
    trace: float

    @property
    def b_simple(self) -> float:
        return self.trace / self.grad_sq_norm if self.grad_sq_norm > 0 else math.inf


def simple_noise_scale(per_example_grads) -> float:
    """B_simple = tr(Σ)/‖G‖², exactly, from the gradients of all N examples.

    Implements :prf:ref:`alg-noise-scale` (the exact value that step 3 estimates). G is the
    mean of the rows and Σ their covariance with the 1/N of a population (so that a batch
    of B examples drawn with replacement has gradient variance tr(Σ)/B).

    Parameters
    ----------
    per_example_grads : array of shape (N, d)
        One example's gradient ∇ℓ_i(θ) per row, N ≥ 1.
    """
    G_i = np.asarray(per_example_grads, dtype=float)
    if G_i.ndim != 2 or G_i.shape[0] < 1:
        raise ValueError(f"per_example_grads must have shape (N, d) with N >= 1, got {G_i.shape}")
    G = G_i.mean(axis=0)
    trace = float(np.sum((G_i - G) ** 2) / G_i.shape[0])
    return NoiseScale(float(G @ G), trace).b_simple


def noise_scale_from_two_batches(g_small_sq_norm, g_big_sq_norm, B_small: int, B_big: int):
    """Unbiased estimates of ‖G‖² and tr(Σ) from gradient norms at two batch sizes.

    Implements :prf:ref:`alg-noise-scale`. Since E‖g_B‖² = ‖G‖² + tr(Σ)/B,

        ‖G‖² ≈ (B_big ‖g_big‖² − B_small ‖g_small‖²) / (B_big − B_small),
        tr(Σ) ≈ (‖g_small‖² − ‖g_big‖²) / (1/B_small − 1/B_big),

    each unbiased (McCandlish et al., 2018, Appendix A.1). Given several measurements (arrays),
    both estimates are averaged *before* their ratio is taken, as McCandlish et al. advise:
    the ratio of two noisy estimates is biased, the ratio of their means much less so.

    Parameters
    ----------
    g_small_sq_norm, g_big_sq_norm : float or array
        ‖g_small‖² and ‖g_big‖², squared norms of gradients of batches of B_small and B_big
        examples (one value, or one per measurement; the two must have the same shape).
    B_small, B_big : int
        The batch sizes, 1 ≤ B_small < B_big.

    Returns
    -------
    NoiseScale
    """
    B_small = check_int("B_small", B_small, 1)
    B_big = check_int("B_big", B_big, B_small + 1)
    small = np.asarray(g_small_sq_norm, dtype=float)
    big = np.asarray(g_big_sq_norm, dtype=float)
    if small.shape != big.shape or small.size == 0:
        raise ValueError(
            f"g_small_sq_norm and g_big_sq_norm must have the same non-empty shape, "
            f"got {small.shape} and {big.shape}"
        )
    grad_sq_norm = (B_big * big.mean() - B_small * small.mean()) / (B_big - B_small)
    trace = (small.mean() - big.mean()) / (1 / B_small - 1 / B_big)
    return NoiseScale(float(grad_sq_norm), float(trace))


def measure_noise_scale(model, batches, *, B_small: int) -> NoiseScale:
    """The noise scale of a model's loss, by the two-batch estimator on its own gradients.

    Implements :prf:ref:`alg-noise-scale`. Each batch ``(x, y)`` of B_big sequences is cut
    into B_big / B_small micro-batches of B_small, as data-parallel training cuts a batch
    across devices; ‖g_small‖² is the mean squared norm of the micro-batch gradients and
    ‖g_big‖² that of their mean, the gradient of the whole batch. One example is one
    sequence (its loss the mean over its tokens). The model's ``.grad`` fields and training
    mode are left as they were.

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(x, y)`` and returning ``(logits, loss)``, like
        :class:`~llmtrain.pretraining.GPT`.
    batches : iterable of (x, y)
        Token-id tensors of shape (B_big, T); every batch the same B_big.
    B_small : int
        The micro-batch size, ≥ 1, dividing B_big, with B_small < B_big.
    """
    B_small = check_int("B_small", B_small, 1)
    params = [p for p in model.parameters() if p.requires_grad]
    small, big, B_big = [], [], None
    was_training = model.training
    model.eval()  # no dropout: the noise measured is that of the data alone
    try:
        for x, y in batches:
            if B_big is None:
                B_big = check_int("B_big (len of each batch)", len(x), 2 * B_small)
            if len(x) != B_big or B_big % B_small:
                raise ValueError(
                    f"every batch must have the same size B_big, a multiple of "
                    f"B_small={B_small}; got {len(x)} after {B_big}"
                )
            grads = []
            for xs, ys in zip(x.split(B_small), y.split(B_small), strict=True):
                _, loss = model(xs, ys)
                g = torch.autograd.grad(loss, params)
                grads.append(torch.cat([gi.reshape(-1) for gi in g]).double())
            grads = torch.stack(grads)
            small.append(float((grads**2).sum(dim=1).mean()))
            big.append(float((grads.mean(dim=0) ** 2).sum()))
    finally:
        model.train(was_training)
    if B_big is None:
        raise ValueError("batches must hold at least one batch")
    return noise_scale_from_two_batches(small, big, B_small, B_big)


def noise_scale_during_training(
    ids, config, *, at, B_small: int = 8, B_big: int = 128, draws: int = 4, seed: int = 0
) -> list[dict]:
    """Train a GPT with :func:`~llmtrain.pretraining.pretrain` and measure its noise scale.

    At each evaluation whose iteration is in ``at``, the callback of ``pretrain`` loads the
    checkpoint just written (into a temporary directory, removed afterwards) and runs
    :func:`measure_noise_scale` on ``draws`` batches of B_big random windows of the training
    split, the same windows at every iteration (a fixed ``seed``), so that the iterations
    differ only in the weights.

    Parameters
    ----------
    ids : sequence of int or torch.Tensor
        The token ids of the text (as ``pretrain`` takes them).
    config : TrainConfig
        The run; evaluations (and so measurements) happen every ``config.eval_interval``.
    at : sequence of int
        The iterations to measure at, each 0 or a multiple of ``eval_interval`` up to
        ``max_iters``.
    B_small, B_big : int
        The two batch sizes of :func:`measure_noise_scale` (B_small divides B_big).
    draws : int
        Batches of B_big per measurement, ≥ 1.
    seed : int
        Seed of the measurement windows.

    Returns
    -------
    list of dict
        One per measured iteration: ``iter``, ``train_loss``, ``val_loss``,
        ``grad_sq_norm``, ``trace``, ``b_simple``.
    """
    import tempfile
    from pathlib import Path

    from ..pretraining import GPT, GPTConfig, pretrain

    draws = check_int("draws", draws, 1)
    B_big = check_int("B_big", B_big, 2)
    B_small = check_int("B_small", B_small, 1, B_big - 1)
    if B_big % B_small:
        raise ValueError(f"B_small={B_small} must divide B_big={B_big}")
    at = {check_int("at[i]", t, 0, config.max_iters) for t in at}
    ids = torch.as_tensor(ids, dtype=torch.long)
    train = ids[: int(len(ids) * (1 - config.val_fraction))]
    T = config.block_size
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(draws):
        starts = torch.randint(len(train) - T, (B_big,), generator=g)
        windows = train[starts[:, None] + torch.arange(T + 1)]
        batches.append((windows[:, :-1], windows[:, 1:]))
    records = []
    with tempfile.TemporaryDirectory() as out:
        checkpoint = Path(out) / "ckpt.pt"

        def measure(record: dict) -> None:
            if record["iter"] not in at:
                return
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            model = GPT(GPTConfig(**state["model_config"]))
            model.load_state_dict(state["model"])
            ns = measure_noise_scale(model, batches, B_small=B_small)
            records.append(
                {
                    "iter": record["iter"],
                    "train_loss": record["train_loss"],
                    "val_loss": record["val_loss"],
                    "grad_sq_norm": ns.grad_sq_norm,
                    "trace": ns.trace,
                    "b_simple": ns.b_simple,
                }
            )

        pretrain(ids, config, out=out, progress=False, callback=measure)
    return records


def steps_examples_tradeoff(B, B_noise: float):
    """S/S_min = 1 + B_noise/B and E/E_min = 1 + B/B_noise at batch size B.

    The steps and examples McCandlish et al.'s model needs to reach a given loss with batch
    size B, relative to their minima (with very large and very small batches). They satisfy
    (S/S_min − 1)(E/E_min − 1) = 1; at B = B_noise both are 2.

    Parameters
    ----------
    B : float or array
        Batch sizes, > 0.
    B_noise : float
        The noise scale, > 0.

    Returns
    -------
    (S/S_min, E/E_min) : tuple of float or arrays
    """
    B_arr = np.asarray(B, dtype=float)
    if not np.all(B_arr > 0):
        raise ValueError(f"B must be > 0, got {B!r}")
    B_noise = check_real("B_noise", B_noise, 0.0, low_open=True)
    return 1 + B_noise / B_arr, 1 + B_arr / B_noise


def fit_steps_examples_tradeoff(steps, examples):
    """Fit S_min, E_min and B_crit = E_min/S_min to measured (S, E) pairs.

    The curve (S/S_min − 1)(E/E_min − 1) = 1 is, multiplied out and divided by S E, the
    linear equation S_min/S + E_min/E = 1 in the unknowns (S_min, E_min); this solves it in
    least squares over the runs.

    Parameters
    ----------
    steps, examples : sequences of float
        For each run (one batch size each), the steps S and examples E = B S it needed to
        reach the target loss; at least two runs, all values > 0.

    Returns
    -------
    (S_min, E_min, B_crit) : tuple of float
    """
    S = np.asarray(steps, dtype=float)
    E = np.asarray(examples, dtype=float)
    if S.shape != E.shape or S.ndim != 1 or len(S) < 2:
        raise ValueError(
            f"steps and examples must be 1-d of the same length >= 2, got {S.shape}, {E.shape}"
        )
    if not (np.all(S > 0) and np.all(E > 0)):
        raise ValueError("steps and examples must be > 0")
    A = np.stack([1 / S, 1 / E], axis=1)
    (S_min, E_min), *_ = np.linalg.lstsq(A, np.ones_like(S), rcond=None)
    return float(S_min), float(E_min), float(E_min / S_min)


def batch_size_warmup(n: float, *, start: int, end: int, warmup: float) -> int:
    """The batch size after n tokens (or examples), ramped linearly from start to end.

    Implements :prf:ref:`alg-batch-size-warmup`: B(n) = start + (end − start) · n/n_ramp for
    n < n_ramp, rounded down to a multiple of ``start`` (so a batch is always a whole number of
    the smallest batches), and ``end`` from n_ramp on. GPT-3 ramped its batch linearly from 32k
    tokens to the full size over the first 4 to 12 billion tokens, depending on the model.

    Parameters
    ----------
    n : float
        Tokens (or examples) trained on so far, ≥ 0.
    start, end : int
        The first and the final batch size, 1 ≤ start ≤ end, in the unit of n.
    warmup : float
        n_ramp, the length of the ramp in the unit of n, ≥ 0 (0: no ramp).
    """
    n = check_real("n", n, 0.0)
    start = check_int("start", start, 1)
    end = check_int("end", end, start)
    n_ramp = check_real("warmup", warmup, 0.0)
    if n >= n_ramp:
        return end
    B = start + (end - start) * n / n_ramp
    return int(min(end, start * math.floor(B / start)))
