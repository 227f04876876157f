"""A ``torch.optim.Optimizer`` front for the package's update rules.

An update rule is a plain function ``rule(θ, g, state, *, out=None, **hyperparameters) ->
(θ, state)`` that works on NumPy arrays and torch tensors alike; it writes θ_t into ``out``
when given (NumPy's convention). This front lets the same function drive an ordinary
PyTorch training loop, updating each parameter in place, with per-parameter-group
hyperparameters, so that ``torch.optim.lr_scheduler`` schedules (which rewrite
``group["lr"]``) work unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch

__all__ = ["TorchOptimizer"]


class TorchOptimizer(torch.optim.Optimizer):
    """Base class of the package's ``torch.optim``-compatible optimizers.

    Subclasses set ``update_rule`` and pass their hyperparameters to ``__init__``.
    """

    update_rule: ClassVar[Callable]

    def __init__(self, params, **hyperparameters):
        # A dry run on a one-element array validates the hyperparameters with the rule's own
        # checks, so that a bad value fails at construction, as it does in torch.optim.
        type(self).update_rule(np.zeros(1), np.zeros(1), {}, **hyperparameters)
        # The rule's own keys, fixed now: torch.optim adds others to ``defaults`` and to the
        # groups (``differentiable`` when a state is loaded, ``initial_lr`` for schedulers).
        self._rule_keys = tuple(hyperparameters)
        super().__init__(params, hyperparameters)

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
                # out=p: the rule writes θ_t into the parameter itself, as torch.optim does.
                _, self.state[p] = rule(p, p.grad, self.state[p], out=p, **hyperparameters)
        return loss
