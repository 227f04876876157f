"""Number formats against torch.finfo and PyTorch's own decoding; loss scaling against
torch.amp.GradScaler; the chapter's exercises and demo."""

import math

import numpy as np
import pytest
import torch

from llmtrain.pretraining import (
    FLOAT_FORMATS,
    DynamicLossScaler,
    FloatFormat,
    cast_statistics,
)

TORCH_DTYPES = ["float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"]


# -- formats --------------------------------------------------------------------------------


@pytest.mark.algorithm("alg-float-decode")
@pytest.mark.parametrize("name", TORCH_DTYPES)
def test_format_constants_equal_torch_finfo(name):
    fmt, info = FLOAT_FORMATS[name], torch.finfo(getattr(torch, name))
    assert fmt.bits == info.bits
    assert fmt.eps == info.eps
    assert fmt.max == info.max
    assert fmt.smallest_normal == info.smallest_normal == info.tiny
    # The smallest subnormal survives a cast; just under half of it rounds to zero.
    dtype = getattr(torch, name)
    sub = torch.tensor(fmt.smallest_subnormal, dtype=torch.float64)
    assert sub.to(dtype).double().item() == fmt.smallest_subnormal
    assert (0.49 * sub).to(dtype).double().item() == 0.0
    assert (0.51 * sub).to(dtype).double().item() == fmt.smallest_subnormal


def _torch_decode(name: str, codes: np.ndarray) -> np.ndarray:
    """PyTorch's reading of the bit patterns ``codes`` as the dtype ``name``."""
    unsigned, signed = {
        8: (np.uint8, np.uint8),
        16: (np.uint16, np.int16),
        32: (np.uint32, np.int32),
    }[FLOAT_FORMATS[name].bits]
    raw = torch.from_numpy(codes.astype(unsigned).view(signed))
    return raw.view(getattr(torch, name)).double().numpy()


@pytest.mark.algorithm("alg-float-decode")
@pytest.mark.parametrize("name", TORCH_DTYPES)
def test_decoding_every_bit_pattern_matches_pytorch(name):
    fmt = FLOAT_FORMATS[name]
    if fmt.bits <= 16:
        codes = np.arange(2**fmt.bits, dtype=np.int64)
    else:  # float32: the special patterns and 20,000 random ones
        rng = np.random.default_rng(0)
        special = [0, 1, 0x007FFFFF, 0x00800000, 0x3F800000, 0x7F7FFFFF, 0x7F800000, 0xFF800001]
        codes = np.concatenate([special, rng.integers(0, 2**32, 20_000)]).astype(np.int64)
    ours = np.array([fmt.decode(int(c)) for c in codes])
    np.testing.assert_array_equal(ours, _torch_decode(name, codes))  # NaNs compare equal here
    finite = ours[np.isfinite(ours)]
    assert finite.max() == fmt.max and finite[finite > 0].min() == fmt.smallest_subnormal


@pytest.mark.algorithm("alg-float-decode")
def test_e4m3_has_no_infinity_and_one_nan_per_sign_and_reaches_448():
    e4m3, e5m2 = FLOAT_FORMATS["float8_e4m3fn"], FLOAT_FORMATS["float8_e5m2"]
    assert not e4m3.has_infinity and e5m2.has_infinity
    assert e4m3.decode(0b0_1111_110) == 448.0  # all-ones exponent still holds numbers
    assert math.isnan(e4m3.decode(0b0_1111_111)) and math.isnan(e4m3.decode(0b1_1111_111))
    values = [e4m3.decode(c) for c in range(256)]
    assert sum(math.isnan(v) for v in values) == 2 and not any(map(math.isinf, values))
    assert e5m2.decode(0b0_11111_00) == math.inf and e5m2.max == 57344.0  # IEEE-like
    # Had E4M3 followed IEEE, its largest number would be 240 (Micikevicius et al., 2022).
    assert FloatFormat("e4m3-ieee", 4, 3).max == 240.0


@pytest.mark.algorithm("alg-float-decode")
def test_tf32_is_float32_with_its_13_low_mantissa_bits_cleared():
    """TF32 has no torch dtype: check it against float32 patterns whose low 13 bits are 0."""
    tf32, fp32 = FLOAT_FORMATS["tf32"], FLOAT_FORMATS["float32"]
    assert tf32.bits == 19 and tf32.eps == 2.0**-10 == FLOAT_FORMATS["float16"].eps
    rng = np.random.default_rng(1)
    for code in rng.integers(0, 2**19, 3000):
        ours, ref = tf32.decode(int(code)), fp32.decode(int(code) << 13)
        assert ours == ref or (math.isnan(ours) and math.isnan(ref))
    as_float32 = np.array([0x7F7FE000], dtype=np.uint32).view(np.float32)[0]
    assert tf32.max == float(as_float32)
    assert tf32.smallest_normal == fp32.smallest_normal  # same 8 exponent bits, same range


def test_bad_formats_and_codes_raise_errors_naming_the_argument():
    with pytest.raises(ValueError, match="exponent_bits"):
        FloatFormat("x", 1, 3)
    with pytest.raises(ValueError, match="special"):
        FloatFormat("x", 4, 3, special="saturating")
    with pytest.raises(ValueError, match="code"):
        FLOAT_FORMATS["float8_e5m2"].decode(256)
    with pytest.raises(ValueError, match="scale"):
        cast_statistics(torch.ones(3), torch.float16, scale=0.0)
    with pytest.raises(TypeError, match="values"):
        cast_statistics([1.0], torch.float16)


# -- casting gradients ----------------------------------------------------------------------


def test_cast_statistics_counts_underflow_subnormals_and_overflow():
    # float16: subnormals from 2^-24 ≈ 5.96e-8 to 2^-14 ≈ 6.1e-5, max 65504.
    g = torch.tensor([1e-8, -1e-6, 1e-3, 1e5, 0.0, 0.0])
    s = cast_statistics(g, torch.float16)
    assert (s.underflow, s.subnormal, s.overflow) == (0.25, 0.25, 0.25)  # zeros not counted
    s = cast_statistics(g, torch.float16, scale=2.0**-2)  # 1e5/4 fits; 1e-6/4 stays subnormal
    assert (s.underflow, s.subnormal, s.overflow) == (0.25, 0.25, 0.0)
    s = cast_statistics(g, torch.float16, scale=2.0**10)  # 1e-8·1024 is now a subnormal
    assert (s.underflow, s.subnormal, s.overflow) == (0.0, 0.25, 0.25)
    s = cast_statistics(g, torch.bfloat16)  # float32's exponent range: nothing lost
    assert (s.underflow, s.subnormal, s.overflow) == (0.0, 0.0, 0.0)


# -- dynamic loss scaling against torch.amp.GradScaler ---------------------------------------


def _run(scaler_kind, overflow_at, steps, *, init, growth, backoff, interval):
    """Train a tiny linear model with SGD and a loss scaler; gradients are made inf at the
    steps in ``overflow_at``. Returns the scales after each update, the steps whose update
    was skipped and the final weights."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    kwargs = dict(growth_factor=growth, backoff_factor=backoff, growth_interval=interval)
    if scaler_kind == "torch":
        scaler = torch.amp.GradScaler("cpu", init_scale=init, **kwargs)
    else:
        scaler = DynamicLossScaler(scale=init, **kwargs)
    scales, skipped = [], []
    for t in range(1, steps + 1):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        before = [p.detach().clone() for p in model.parameters()]
        if scaler_kind == "torch":
            scaler.scale(loss).backward()
            if t in overflow_at:
                model.weight.grad[0, 0] = math.inf
            scaler.step(optimizer)
            scaler.update()
            scales.append(scaler.get_scale())
        else:
            (scaler.scale * loss).backward()
            if t in overflow_at:
                model.weight.grad[0, 0] = math.inf
            if scaler.update(scaler.unscale_(model.parameters())):
                optimizer.step()
            scales.append(scaler.scale)
        if all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)):
            skipped.append(t)
    return scales, skipped, [p.detach() for p in model.parameters()]


@pytest.mark.algorithm("alg-dynamic-loss-scaling")
@pytest.mark.parametrize(
    "overflow_at, settings",
    [
        ({2, 3, 9, 10, 11, 20}, dict(init=2.0**16, growth=2.0, backoff=0.5, interval=3)),
        ({1, 5, 6, 14}, dict(init=1024.0, growth=4.0, backoff=0.25, interval=2)),
        ({4, 12}, dict(init=2.0**10, growth=2.0, backoff=0.5, interval=1)),
    ],
)
def test_loss_scaler_gives_gradscalers_scales_and_skipped_steps(overflow_at, settings):
    ours = _run("ours", overflow_at, 24, **settings)
    ref = _run("torch", overflow_at, 24, **settings)
    assert ours[0] == ref[0]  # every scale, exactly (powers of two)
    assert ours[1] == ref[1] == sorted(overflow_at)
    for a, b in zip(ours[2], ref[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.algorithm("alg-dynamic-loss-scaling")
def test_loss_scaler_matches_gradscaler_for_factors_that_are_not_powers_of_two():
    settings = dict(init=3000.0, growth=1.5, backoff=0.3, interval=2)
    ours = _run("ours", {3, 4, 8}, 16, **settings)
    ref = _run("torch", {3, 4, 8}, 16, **settings)
    assert ours[0] == pytest.approx(ref[0], rel=1e-6)  # GradScaler keeps S in float32
    assert ours[1] == ref[1] == [3, 4, 8]


@pytest.mark.algorithm("alg-dynamic-loss-scaling")
def test_loss_scaler_counts_and_resets():
    scaler = DynamicLossScaler(scale=8.0, growth_interval=2)
    steps = [scaler.update(f) for f in (False, False, True, False, True, True, False)]
    assert steps == [True, True, False, True, False, False, True]
    assert scaler.scale == 8.0 * 2 * 0.5**3 and scaler.skipped == 3 and scaler.good_steps == 1
    with pytest.raises(ValueError, match="backoff_factor"):
        DynamicLossScaler(backoff_factor=1.0)
    with pytest.raises(ValueError, match="growth_factor"):
        DynamicLossScaler(growth_factor=0.5)


# -- the chapter ----------------------------------------------------------------------------


def test_precision_demo_moves_its_thresholds_and_counts_underflow():
    from llmtrain.demos.pretraining.precision import logit_gradients, loss_scale_demo

    demo = loss_scale_demo()
    first = demo.png()
    low = demo.result.underflow
    assert low > 0.5  # a 2^19-token batch: most logit gradients round to 0 in float16
    demo.set(log2_scale=16)
    assert demo.png() != first
    assert demo.result.underflow < 0.01 < low
    assert (
        demo.result.underflow
        == cast_statistics(logit_gradients(19), torch.float16, 2.0**16).underflow
    )
    # The gradients of a 2^k-token batch are those of the 2^10-token one divided by 2^(k-10).
    torch.testing.assert_close(logit_gradients(19) * 2.0**9, logit_gradients(10), rtol=0, atol=0)


def test_precision_chapter_exercise_solutions():
    from chapters import run_solution

    ns = run_solution("pretraining/precision.md", "ex-precision-format")
    f12 = ns["f12"]
    assert (f12.bits, f12.max, f12.eps, f12.smallest_subnormal) == (12, 65024.0, 2**-6, 2**-20)
    assert f12.smallest_normal == FLOAT_FORMATS["float16"].smallest_normal
    ns = run_solution("pretraining/precision.md", "ex-precision-scale")
    assert ns["k"] == 25 and 1e-3 * 2.0**25 <= 65504 < 1e-3 * 2.0**26
    assert ns["share"] == 1.0
