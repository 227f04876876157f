"""Stability at scale: block-wise quantisation against a per-block loop and its error bounds,
8-bit Adam against 32-bit AdamW, soft-capping against its Taylor series and autograd, and
the spike-skipping rule on hand-made loss histories."""

import math

import numpy as np
import pytest
import torch

from chapters import run_solution
from llmtrain.optim import (
    adam8bit_step,
    adam_state_bytes,
    adamw_step,
    code_map,
    dequantize_blockwise,
    quantize_blockwise,
    should_skip_update,
    softcap,
)


def _reference_codes(x, block_size):
    """A plain loop over blocks for the linear map: code = round(127 x / N_b) + 127."""
    flat = np.ravel(x).astype(np.float64)
    codes = np.full(flat.size, 127, dtype=np.int64)
    for start in range(0, flat.size, block_size):
        block = flat[start : start + block_size]
        N = float(np.float32(np.abs(block).max()))
        if N > 0:
            codes[start : start + block_size] = np.rint(block / N * 127) + 127
    return codes.reshape(np.shape(x))


def _random_tensor(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 300)))
    x = rng.standard_normal(shape) * np.exp(2 * rng.standard_normal(shape))
    x.flat[int(rng.integers(x.size))] = 1e4  # an outlier
    return x, int(rng.choice([1, 7, 64, 2048]))


@pytest.mark.algorithm("alg-blockwise-quantization")
@pytest.mark.parametrize("seed", range(4))
def test_linear_codes_match_a_per_block_loop_and_the_error_bound(seed):
    x, B = _random_tensor(seed)
    codes, N = quantize_blockwise(x, B, code_map="linear")
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    assert N.dtype == np.float32 and N.shape == (-(-x.size // B),)
    np.testing.assert_array_equal(codes, _reference_codes(x, B))
    error = np.abs(dequantize_blockwise(codes, N, B, code_map="linear") - x).ravel()
    bound = np.repeat(N.astype(np.float64) / 127 / 2, B)[: x.size]
    assert np.all(error <= bound * (1 + 1e-6) + 1e-30)
    # The outlier coarsens only its own block: every other block keeps its own scale.
    assert np.sum(N >= 1e4) == 1 and np.all(np.delete(N, np.argmax(N)) < 1e4)


@pytest.mark.algorithm("alg-blockwise-quantization")
@pytest.mark.parametrize("signed", [True, False])
def test_dynamic_codes_are_the_nearest_level(signed):
    x, B = _random_tensor(7)
    x = x if signed else np.abs(x)
    codes, N = quantize_blockwise(x, B, signed=signed)
    levels = code_map("dynamic", signed).astype(np.float64)
    assert levels.size == 256 and levels[-1] == 1.0
    assert levels[0] == 0.0 if not signed else -1.0 < levels[0] < -0.99
    scale = np.repeat(N.astype(np.float64), B)[: x.size]
    normalised = x.ravel() / scale
    nearest = np.abs(normalised[:, None] - levels[None, :]).min(axis=1)
    chosen = np.abs(normalised - levels[codes.ravel()])
    np.testing.assert_allclose(chosen, nearest, rtol=0, atol=1e-7)
    d = dequantize_blockwise(codes, N, B, signed=signed)
    np.testing.assert_array_equal(d.ravel(), (levels[codes.ravel()] * scale).astype(np.float32))


@pytest.mark.algorithm("alg-blockwise-quantization")
def test_dynamic_map_is_precise_for_small_values_where_linear_is_not():
    x = np.logspace(-6, 0, 2048)  # one block spanning six decades
    relative = {}
    for kind in ["dynamic", "linear"]:
        codes, N = quantize_blockwise(x, code_map=kind, signed=False)
        relative[kind] = np.abs(dequantize_blockwise(codes, N, code_map=kind, signed=False) / x - 1)
    # Dynamic: a fraction of 7 - E bits within decade E, error ≤ 4.5 / 2^(7-E) in relative terms.
    for E in range(4):
        decade = (x > 10.0 ** -(E + 1)) & (x <= 10.0**-E)
        assert relative["dynamic"][decade].max() <= 4.5 / 2 ** (7 - E)
    # Linear: everything below half a level, 1/510, becomes 0.
    assert np.all(relative["linear"][x < 1 / 510 * 0.999] == 1.0)


@pytest.mark.algorithm("alg-blockwise-quantization")
def test_blockwise_all_zero_block_and_bad_arguments():
    codes, N = quantize_blockwise(np.zeros(10), 4)
    assert not N.any() and not dequantize_blockwise(codes, N, 4).any()
    with pytest.raises(ValueError, match="block_size"):
        quantize_blockwise(np.ones(3), 0)
    with pytest.raises(ValueError, match="non-negative"):
        quantize_blockwise(-np.ones(3), signed=False)
    with pytest.raises(ValueError, match="kind"):
        quantize_blockwise(np.ones(3), code_map="log")
    with pytest.raises(ValueError, match="scales"):
        dequantize_blockwise(codes, N[:1], 4)
    with pytest.raises(TypeError, match="codes"):
        dequantize_blockwise(np.zeros(10), N, 4)


def _least_squares(n=200, m=400, seed=0):
    """An overdetermined least-squares problem (one minimiser) and its gradient and loss."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) / np.sqrt(n)
    y = A @ rng.standard_normal(n) + 0.1 * rng.standard_normal(m)
    return lambda θ: (10 * A.T @ (A @ θ - y) / m, 0.5 * np.mean((A @ θ - y) ** 2))


@pytest.mark.algorithm("alg-adam-8bit")
def test_adam8bit_first_step_is_adamws_and_state_is_8bit():
    rng = np.random.default_rng(3)
    θ, g = rng.standard_normal(700), rng.standard_normal(700)
    kw = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours, state = adam8bit_step(θ, g, {}, block_size=128, **kw)
    theirs, _ = adamw_step(θ, g, {}, **kw)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert state["m_codes"].dtype == np.uint8 and state["v_codes"].dtype == np.uint8
    assert state["m_scales"].shape == (6,) and state["v_scales"].dtype == np.float32


@pytest.mark.algorithm("alg-adam-8bit")
def test_adam8bit_tracks_32bit_adamw_on_least_squares():
    grad = _least_squares()
    θ = {"dynamic": np.zeros(200), "linear": np.zeros(200), "32-bit": np.zeros(200)}
    state = {k: {} for k in θ}
    kw = dict(lr=1e-2, betas=(0.9, 0.999), weight_decay=0.0)
    start = grad(θ["32-bit"])[1]
    for _ in range(100):
        for k in θ:
            if k == "32-bit":
                θ[k], state[k] = adamw_step(θ[k], grad(θ[k])[0], state[k], **kw)
            else:
                θ[k], state[k] = adam8bit_step(
                    θ[k], grad(θ[k])[0], state[k], block_size=256, code_map=k, **kw
                )
        loss = {k: grad(θ[k])[1] for k in θ}
        assert abs(loss["dynamic"] - loss["32-bit"]) < 0.02 * loss["32-bit"]
    assert loss["32-bit"] < 0.2 * start
    # Linear levels round small momenta to 0: that run lags far behind.
    assert loss["linear"] > 1.5 * loss["32-bit"]


@pytest.mark.algorithm("alg-adam-8bit")
def test_adam8bit_rejects_bad_arguments():
    θ = np.zeros(3)
    with pytest.raises(ValueError, match="block_size"):
        adam8bit_step(θ, θ, {}, block_size=0)
    with pytest.raises(ValueError, match="eps"):
        adam8bit_step(θ, θ, {}, eps=0.0)
    with pytest.raises(ValueError):
        adam8bit_step(θ, np.zeros(4), {})


def test_adam_state_bytes():
    assert adam_state_bytes(10**6) == 8e6
    assert adam_state_bytes(4096, bits=8, block_size=2048) == 2 * 4096 + 2 * 2 * 4
    assert adam_state_bytes(4097, bits=8, block_size=2048) == 2 * 4097 + 2 * 3 * 4
    with pytest.raises(ValueError, match="bits"):
        adam_state_bytes(10, bits=16)


@pytest.mark.algorithm("alg-softcap")
def test_softcap_bounded_taylor_and_derivative():
    z = torch.linspace(-1e3, 1e3, 2001, dtype=torch.float64, requires_grad=True)
    c = 30.0
    out = softcap(z, c)
    assert out.abs().max() <= c and softcap(torch.tensor(60.0), c) < c
    out.sum().backward()
    torch.testing.assert_close(z.grad, 1 - torch.tanh(z.detach() / c) ** 2)
    small = np.array([-0.3, 0.01, 0.2])
    taylor = small - small**3 / (3 * c**2) + 2 * small**5 / (15 * c**4)
    np.testing.assert_allclose(softcap(small, c), taylor, rtol=1e-9)
    np.testing.assert_allclose(softcap(z.detach().numpy(), c), out.detach().numpy(), rtol=1e-15)
    with pytest.raises(ValueError, match="cap"):
        softcap(small, 0.0)


@pytest.mark.algorithm("alg-loss-spike-skip")
def test_should_skip_update_on_spikes_and_non_finite_losses():
    rng = np.random.default_rng(0)
    history = list(3.0 + 0.01 * rng.standard_normal(50))
    assert not should_skip_update(3.01, history)
    assert should_skip_update(3.5, history)
    assert should_skip_update(math.nan, history)
    assert should_skip_update(math.inf, [])
    assert not should_skip_update(100.0, history[:5])  # no baseline yet
    assert not should_skip_update(3.05, history, threshold=6.0)
    assert should_skip_update(3.05, history, threshold=2.0)
    with pytest.raises(ValueError, match="threshold"):
        should_skip_update(1.0, history, threshold=0.0)
    with pytest.raises(ValueError, match="min_history"):
        should_skip_update(1.0, history, min_history=1)


def test_exercise_adam_memory_of_a_7b_model():
    gb = run_solution("optimization/stability-at-scale.md", "ex-8bit-memory")["gb"]
    assert gb["32-bit"] == pytest.approx(56.0)
    assert gb["8-bit"] == pytest.approx(14.0 + 14.0 * 4 / 2048, rel=1e-3)


def test_quantization_demo_moves_and_draws_the_package_errors():
    from llmtrain.demos.optimization.stability_at_scale import (
        heavy_tailed_moment,
        quantization_demo,
    )

    demo = quantization_demo()
    first = demo.png()
    x = heavy_tailed_moment()
    codes, N = quantize_blockwise(x, 2048, code_map="linear")
    linear = np.abs(dequantize_blockwise(codes, N, 2048, code_map="linear") - x) / np.abs(x)
    np.testing.assert_allclose(demo.result["linear"], np.sort(linear[np.abs(x) >= 1e-6]))
    demo.set(log2_block=5)
    assert np.median(demo.result["linear"]) < np.median(linear[np.abs(x) >= 1e-6])
    assert demo.png() != first
