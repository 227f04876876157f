import math

import pytest

from llmtrain._checks import check_int, check_real, check_shape_match, interval


def test_interval_notation():
    assert interval(0, 1, high_open=True) == "[0, 1)"
    assert interval(0, math.inf, low_open=True) == "(0, inf)"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: check_real("eps", 0.0, 0.0, low_open=True),
            ValueError,
            r"eps must be in \(0, inf\), got 0.0",
        ),
        (
            lambda: check_real("beta2", 1.0, 0.0, 1.0, high_open=True),
            ValueError,
            r"beta2 must be in \[0, 1\)",
        ),
        (lambda: check_real("lr", "fast"), TypeError, "lr must be a real number"),
        (lambda: check_real("lr", True), TypeError, "lr must be a real number"),
        (lambda: check_real("lr", math.inf), ValueError, "lr must be in"),
        (
            lambda: check_int("batch_size", 0, 1),
            ValueError,
            r"batch_size must be an integer in \[1, inf\], got 0",
        ),
        (lambda: check_int("batch_size", 2.5, 1), TypeError, "batch_size must be an integer"),
        (
            lambda: check_shape_match("logits", (2, 3), "targets", (2,)),
            ValueError,
            r"logits and targets must have the same shape, got \(2, 3\) and \(2,\)",
        ),
    ],
)
def test_errors_name_the_argument_and_the_range(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_valid_values_pass_through():
    assert check_real("lr", 1) == 1.0 and isinstance(check_real("lr", 1), float)
    assert check_int("n", 5, 1, 10) == 5
