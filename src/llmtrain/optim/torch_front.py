"""A ``torch.optim.Optimizer`` front for the package's update rules.

An update rule is a plain function ``rule(θ, g, state, *, out=None, **hyperparameters) ->
(θ, state)`` that works on NumPy arrays and torch tensors alike; it writes θ_t into ``out``
when given (NumPy's convention). This front lets the same function drive an ordinary
PyTorch training loop, updating each parameter in place, with per-parameter-group
hyperparameters, so that ``torch.optim.lr_scheduler`` schedules (which rewrite
``group["lr"]``) work unchanged.

The front also takes torch.optim's options that are not part of any rule. ``maximize`` ascends
the objective: the rule sees the negated gradient -∇f, as in torch's pseudo-code, so it works
for every rule. ``foreach`` and ``fused`` only choose how torch batches its kernels; the front
accepts them and always runs the same per-parameter loop, so they change no number.
``capturable`` (CUDA graphs) and ``differentiable`` (autograd through the step) are not
supported: True raises an error that points to the torch optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch

__all__ = ["TorchOptimizer"]


class TorchOptimizer(torch.optim.Optimizer):
    """Base class of the package's ``torch.optim``-compatible optimizers.

    Subclasses set ``update_rule`` and pass their hyperparameters to ``__init__``, with any of
    torch's options ``maximize``, ``foreach``, ``capturable``, ``differentiable`` and ``fused``
    that their torch namesake takes (see the module docstring).
    """

    update_rule: ClassVar[Callable]

    def __init__(
        self,
        params,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        **hyperparameters,
    ):
        self._check_torch_options(maximize, foreach, capturable, differentiable, fused)
        # A dry run on a one-element array validates the hyperparameters with the rule's own
        # checks, so that a bad value fails at construction, as it does in torch.optim.
        type(self).update_rule(np.zeros(1), np.zeros(1), {}, **hyperparameters)
        # The rule's own keys, fixed now: torch.optim adds others to ``defaults`` and to the
        # groups (``differentiable`` when a state is loaded, ``initial_lr`` for schedulers).
        self._rule_keys = tuple(hyperparameters)
        # maximize is a per-group option, as in torch.optim, but the front applies it, not the rule.
        super().__init__(params, {**hyperparameters, "maximize": maximize})

    def _check_torch_options(self, maximize, foreach, capturable, differentiable, fused):
        name = type(self).__name__
        for option, value, allowed in [
            ("maximize", maximize, (bool,)),
            ("foreach", foreach, (bool, type(None))),
            ("capturable", capturable, (bool,)),
            ("differentiable", differentiable, (bool,)),
            ("fused", fused, (bool, type(None))),
        ]:
            if not isinstance(value, allowed):
                kinds = "True or False" + (" or None" if type(None) in allowed else "")
                raise TypeError(f"{option} must be {kinds}, got {value!r}")
        for option, value in [("capturable", capturable), ("differentiable", differentiable)]:
            if value:
                raise ValueError(
                    f"{option}=True is not supported by llmtrain.optim.{name}; "
                    f"use torch.optim.{name}"
                )
        if foreach and fused:
            raise ValueError("fused and foreach cannot both be True (as in torch.optim)")

    @torch.no_grad()
    def step(self, closure=None):
        """Apply one update to every parameter that has a gradient; return the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rule = type(self).update_rule
        for group in self.param_groups:
            hyperparameters = {k: group[k] for k in self._rule_keys}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                # Ascending f is descending -f; groups saved before maximize existed lack the key.
                g = -p.grad if group.get("maximize", False) else p.grad
                # out=p: the rule writes θ_t into the parameter itself, as torch.optim does.
                _, self.state[p] = rule(p, g, self.state[p], out=p, **hyperparameters)
        return loss
