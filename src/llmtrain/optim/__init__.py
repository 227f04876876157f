"""Part I, Optimization: update rules, their ``torch.optim`` fronts, and training-loop tools.

Every optimizer is one pure update rule ``rule(θ, g, state, **hyperparameters) -> (θ, state)``
(for example :func:`sgd_step`) that runs on NumPy arrays and torch tensors alike, plus a
drop-in ``torch.optim`` replacement built on it (for example :class:`SGD`).
"""

from .landscapes import Quadratic, Rosenbrock
from .minimize import Trajectory, minimize
from .sgd import SGD, sgd_step
from .torch_front import TorchOptimizer

__all__ = [
    "SGD",
    "Quadratic",
    "Rosenbrock",
    "TorchOptimizer",
    "Trajectory",
    "minimize",
    "sgd_step",
]
