"""Floating-point formats from their bit layouts, and dynamic loss scaling for float16.

A binary floating-point number is a sign bit, n_e exponent bits and n_m mantissa bits. From
those two numbers (and how the format spends its all-ones exponent) follow its range, its
precision and its smallest numbers: :class:`FloatFormat` computes them, and decodes every bit
pattern, so that the tests can compare it with ``torch.finfo`` and with PyTorch's own decoding
of float16, bfloat16 and the two float8 formats.

:class:`DynamicLossScaler` is the loss scaling of mixed-precision training with float16
(Micikevicius et al., 2018): multiply the loss by a scale S before the backward pass so that
small gradients do not underflow, divide the gradients by S before the update, and adapt S so
that it stays as large as it can without overflowing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_int, check_real

__all__ = [
    "FLOAT_FORMATS",
    "CastStatistics",
    "DynamicLossScaler",
    "FloatFormat",
    "cast_statistics",
]


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format: 1 sign bit, ``exponent_bits`` n_e, ``mantissa_bits`` n_m.

    Implements :prf:ref:`alg-float-decode` (:meth:`decode`).

    The exponent is stored with a bias E_0 = 2^(n_e - 1) - 1. A stored exponent E between 1 and
    its largest value gives the normal number (-1)^sign · (1 + M / 2^n_m) · 2^(E - E_0); E = 0
    gives the subnormals (-1)^sign · (M / 2^n_m) · 2^(1 - E_0), and zero. ``special`` says what
    the all-ones exponent encodes:

    - ``"ieee"`` (IEEE 754, float32, float16, bfloat16, E5M2): infinity if M = 0, else NaN, so
      the largest finite number has the exponent below it;
    - ``"fn"`` (finite with NaN, E4M3 of the OCP FP8 specification): no infinities, and only
      the all-ones mantissa is NaN, so the all-ones exponent holds numbers too.
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    special: str = "ieee"

    def __post_init__(self):
        check_int("exponent_bits", self.exponent_bits, 2, 11)
        check_int("mantissa_bits", self.mantissa_bits, 1, 52)
        if self.special not in ("ieee", "fn"):
            raise ValueError(f"special must be one of ('ieee', 'fn'), got {self.special!r}")

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        """E_0 = 2^(n_e - 1) - 1."""
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def eps(self) -> float:
        """Machine epsilon 2^-n_m: the gap between 1 and the next larger number."""
        return 2.0**-self.mantissa_bits

    @property
    def smallest_normal(self) -> float:
        """2^(1 - E_0): the smallest number with full precision (``torch.finfo(...).tiny``)."""
        return 2.0 ** (1 - self.bias)

    @property
    def smallest_subnormal(self) -> float:
        """2^(1 - E_0 - n_m): the smallest positive number; half of it rounds to zero."""
        return 2.0 ** (1 - self.bias - self.mantissa_bits)

    @property
    def max(self) -> float:
        """The largest finite number.

        IEEE: exponent 2^n_e - 2 - E_0, mantissa all ones: (2 - 2^-n_m) · 2^(2^n_e - 2 - E_0).
        fn: exponent 2^n_e - 1 - E_0, mantissa all ones but the last bit (all ones is NaN):
        (2 - 2^(1 - n_m)) · 2^(2^n_e - 1 - E_0), 448 for E4M3.
        """
        top = 2**self.exponent_bits - 1 - self.bias  # the exponent of the all-ones field
        if self.special == "ieee":
            return (2.0 - 2.0**-self.mantissa_bits) * 2.0 ** (top - 1)
        return (2.0 - 2.0 ** (1 - self.mantissa_bits)) * 2.0**top

    @property
    def has_infinity(self) -> bool:
        return self.special == "ieee"

    def decode(self, code: int) -> float:
        """The number that the bit pattern ``code`` (an integer of ``bits`` bits) encodes."""
        check_int("code", code, 0, 2**self.bits - 1)
        n_e, n_m = self.exponent_bits, self.mantissa_bits
        sign = -1.0 if code >> (n_e + n_m) else 1.0
        E = (code >> n_m) & (2**n_e - 1)
        M = code & (2**n_m - 1)
        if E == 2**n_e - 1:  # the all-ones exponent
            if self.special == "ieee":
                return sign * math.inf if M == 0 else math.nan
            if M == 2**n_m - 1:
                return math.nan
        if E == 0:
            return sign * M / 2**n_m * 2.0 ** (1 - self.bias)
        return sign * (1 + M / 2**n_m) * 2.0 ** (E - self.bias)


FLOAT_FORMATS: dict[str, FloatFormat] = {
    f.name: f
    for f in (
        FloatFormat("float32", 8, 23),
        FloatFormat("tf32", 8, 10),  # float32's range, float16's precision; no torch dtype
        FloatFormat("float16", 5, 10),
        FloatFormat("bfloat16", 8, 7),
        FloatFormat("float8_e4m3fn", 4, 3, special="fn"),
        FloatFormat("float8_e5m2", 5, 2),
    )
}
"""The formats of mixed-precision training, by name (the torch dtype's name where one
exists)."""


@dataclass(frozen=True)
class CastStatistics:
    """What happens to the nonzero entries of a tensor cast to a narrower format, as
    fractions of those entries."""

    underflow: float  # became 0
    subnormal: float  # became a subnormal: kept, but with fewer significant bits
    overflow: float  # became ±inf (or NaN where the format has no infinity)


def cast_statistics(values: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> CastStatistics:
    """Cast ``scale · values`` to ``dtype`` and count the nonzero entries that underflow to
    zero, become subnormal or overflow, as fractions of the nonzero entries.

    ``values`` is a float32 (or float64) tensor; the product is formed in that precision
    before the one rounding to ``dtype``, as loss scaling does to the loss.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise TypeError(f"values must be a floating-point tensor, got {type(values).__name__}")
    scale = check_real("scale", scale, 0.0, low_open=True)
    x = values.detach().flatten()
    x = x[x != 0] * scale
    if x.numel() == 0:
        raise ValueError("values must have at least one nonzero entry")
    y = x.to(dtype).to(x.dtype)
    finite = torch.isfinite(y)
    tiny = torch.finfo(dtype).smallest_normal
    n = x.numel()
    return CastStatistics(
        underflow=(y == 0).sum().item() / n,
        subnormal=((y != 0) & (y.abs() < tiny)).sum().item() / n,
        overflow=(~finite).sum().item() / n,
    )


class DynamicLossScaler:
    """Dynamic loss scaling: the loss scale S, lowered when the gradients overflow and raised
    after a run of steps that did not.

    Implements :prf:ref:`alg-dynamic-loss-scaling`.

    Parameters
    ----------
    scale : float
        The initial scale S_0 (PyTorch's default 2^16).
    growth_factor : float
        f_up > 1: S is multiplied by it after ``growth_interval`` finite steps in a row.
    backoff_factor : float
        f_down in (0, 1): S is multiplied by it at every step whose gradients overflow, and
        that step's update is skipped.
    growth_interval : int
        n_grow, the number of consecutive finite steps before S grows.

    Examples
    --------
    A training step with it, for parameters θ and a loss L::

        (scaler.scale * loss).backward()
        found_inf = scaler.unscale_(model.parameters())  # g ← g / S, and check g is finite
        if scaler.update(found_inf):  # returns whether to step
            optimizer.step()
    """

    def __init__(
        self,
        scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ):
        self.scale = check_real("scale", scale, 0.0, low_open=True)
        self.growth_factor = check_real("growth_factor", growth_factor, 1.0, low_open=True)
        self.backoff_factor = check_real(
            "backoff_factor", backoff_factor, 0.0, 1.0, low_open=True, high_open=True
        )
        self.growth_interval = check_int("growth_interval", growth_interval, 1)
        self.good_steps = 0  # n_ok: finite steps since the last change of S
        self.skipped = 0  # steps whose update was skipped, over the whole run

    def unscale_(self, parameters) -> bool:
        """Divide every gradient by S in place; return whether any entry is inf or NaN."""
        found_inf = False
        for p in parameters:
            if p.grad is not None:
                p.grad.div_(self.scale)
                found_inf = found_inf or not torch.isfinite(p.grad).all().item()
        return found_inf

    def update(self, found_inf: bool) -> bool:
        """Adapt S after one step and return whether that step's update should be applied.

        Overflow: S ← f_down · S, n_ok ← 0, skip the update. Otherwise n_ok ← n_ok + 1, and
        when n_ok reaches n_grow, S ← f_up · S and n_ok ← 0.
        """
        if found_inf:
            self.scale *= self.backoff_factor
            self.good_steps = 0
            self.skipped += 1
            return False
        self.good_steps += 1
        if self.good_steps == self.growth_interval:
            grown = self.scale * self.growth_factor
            if math.isfinite(grown):  # as PyTorch: never grow S to infinity
                self.scale = grown
            self.good_steps = 0
        return True
