"""How much memory an optimizer's state takes, per parameter tensor and per model.

The counts are those of the update rules in this package (and of ``torch.optim``): the
number of stored values per parameter tensor, leaving out the step counter, which is a single
number per tensor. The byte counts follow the accounting of ZeRO (Rajbhandari et al., 2020).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["OPTIMIZER_STATES", "model_state_bytes", "optimizer_state_size"]

#: The state arrays each optimizer keeps, as multiples of the parameter tensor's size
#: (Adafactor's factored state is not a multiple; :func:`optimizer_state_size` counts it).
OPTIMIZER_STATES: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "sgd_momentum": ("momentum buffer b",),
    "adagrad": ("sum of squared gradients s",),
    "rmsprop": ("moving average of squared gradients v",),
    "rmsprop_momentum": ("moving average of squared gradients v", "momentum buffer b"),
    "rmsprop_centered": ("moving average of squared gradients v", "moving average of gradients ḡ"),
    "adam": ("first moment m", "second moment v"),
    "adamw": ("first moment m", "second moment v"),
    "adam_amsgrad": ("first moment m", "second moment v", "running maximum of v"),
    "adafactor": ("row averages R and column averages C (a matrix), or v (a vector)",),
}


def _check_name(name: str) -> str:
    if name not in OPTIMIZER_STATES:
        raise ValueError(f"name must be one of {sorted(OPTIMIZER_STATES)}, got {name!r}")
    return name


def optimizer_state_size(name: str, shape: tuple[int, ...]) -> int:
    """The number of values an optimizer stores for one parameter tensor of ``shape``.

    Every optimizer but Adafactor stores whole copies of the tensor (see
    ``OPTIMIZER_STATES``); Adafactor stores n + m values for an n × m matrix (for each
    matrix of a stack, when there are more dimensions) and n for a vector of n.

    >>> optimizer_state_size("adam", (1024, 4096)), optimizer_state_size("adafactor", (1024, 4096))
    (8388608, 5120)
    """
    _check_name(name)
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"shape must have sizes >= 0, got {shape}")
    size = math.prod(shape)
    if name == "adafactor":
        if len(shape) < 2:
            return size
        *batch, n, m = shape
        return math.prod(batch) * (n + m)
    return len(OPTIMIZER_STATES[name]) * size


def model_state_bytes(name: str, shapes: Iterable[tuple[int, ...]], *, mixed_precision=False):
    """Bytes of model state (weights, gradients, optimizer state) for parameters of ``shapes``.

    In fp32 (``mixed_precision=False``) weights, gradients and optimizer state take 4 bytes
    per value. In mixed precision the weights and gradients are fp16 (2 + 2 bytes) and the
    optimizer keeps an fp32 master copy of the weights next to its fp32 state, which is
    ZeRO's accounting: for Adam 2 + 2 + 4 + 4 + 4 = 16 bytes per parameter. Activations and
    temporary buffers are not counted.

    >>> model_state_bytes("adam", [(1000,)], mixed_precision=True) / 1000
    16.0
    >>> model_state_bytes("sgd_momentum", [(1000,)]) / 1000
    12.0
    """
    _check_name(name)
    shapes = [tuple(s) for s in shapes]
    parameters = sum(math.prod(s) for s in shapes)
    state = sum(optimizer_state_size(name, s) for s in shapes)
    if mixed_precision:
        return 2 * parameters + 2 * parameters + 4 * parameters + 4 * state
    return 4 * parameters + 4 * parameters + 4 * state
