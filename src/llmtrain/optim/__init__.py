"""Part I, Optimization: update rules, their ``torch.optim`` fronts, and training-loop tools.

Every optimizer is one pure update rule ``rule(θ, g, state, **hyperparameters) -> (θ, state)``
(for example :func:`sgd_step`) that runs on NumPy arrays and torch tensors alike, plus a
drop-in ``torch.optim`` replacement built on it (for example :class:`SGD`).
"""

from .accumulation import accumulate_gradients, accumulation_step
from .adafactor import Adafactor, adafactor_step
from .adagrad import Adagrad, adagrad_step
from .adam import Adam, AdamW, adam_step, adamw_step
from .batch_scaling import linear_scaling_rule, linear_scaling_warmup, square_root_scaling_rule
from .clipping import clip_by_global_norm, clip_grad_norm_, global_norm
from .early_stopping import EarlyStopping
from .gradient_noise import GradientVariance, measure_gradient_variance, minibatch_gradient_variance
from .landscapes import Quadratic, Rosenbrock
from .lion import Lion, lion_step
from .minibatches import iterations_per_epoch, minibatches
from .minimize import Trajectory, minimize
from .muon import Muon, muon_lr_scale, muon_step, newton_schulz
from .noise_scale import (
    NoiseScale,
    batch_size_warmup,
    fit_steps_examples_tradeoff,
    measure_noise_scale,
    noise_scale_during_training,
    noise_scale_from_two_batches,
    simple_noise_scale,
    steps_examples_tradeoff,
)
from .quadratic_theory import (
    gd_rate,
    heavy_ball_converges,
    iteration_matrix,
    momentum_rate,
    optimal_gd,
    optimal_heavy_ball,
    steps_to_reduce,
)
from .quantized_states import (
    adam8bit_step,
    adam_state_bytes,
    code_map,
    dequantize_blockwise,
    quantize_blockwise,
)
from .rmsprop import RMSprop, rmsprop_step
from .schedule_free import ScheduleFreeAdamW, schedule_free_adamw_step
from .schedules import (
    ScheduledLR,
    linear_warmup,
    noam,
    one_cycle,
    sgdr,
    step_decay,
    warmup_cosine,
)
from .sgd import SGD, sgd_step
from .soft_capping import softcap
from .spike_skipping import should_skip_update
from .state_memory import model_state_bytes, optimizer_state_size
from .torch_front import TorchOptimizer
from .toy_problems import (
    LeastSquares,
    LogisticRegression,
    PolynomialTask,
    TrainingRun,
    linear_regression_data,
    polynomial_regression_data,
    train,
    two_class_data,
)
from .velocity import heavy_ball_velocity_step, nesterov_velocity_step
from .weight_averaging import ParameterEMA, ema_update, uniform_average_update
from .wsd_schedule import warmup_stable_decay

__all__ = [
    "SGD",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "EarlyStopping",
    "GradientVariance",
    "LeastSquares",
    "Lion",
    "LogisticRegression",
    "Muon",
    "NoiseScale",
    "ParameterEMA",
    "PolynomialTask",
    "Quadratic",
    "RMSprop",
    "Rosenbrock",
    "ScheduleFreeAdamW",
    "ScheduledLR",
    "TorchOptimizer",
    "TrainingRun",
    "Trajectory",
    "accumulate_gradients",
    "accumulation_step",
    "adafactor_step",
    "adagrad_step",
    "adam8bit_step",
    "adam_state_bytes",
    "adam_step",
    "adamw_step",
    "batch_size_warmup",
    "clip_by_global_norm",
    "clip_grad_norm_",
    "code_map",
    "dequantize_blockwise",
    "ema_update",
    "fit_steps_examples_tradeoff",
    "gd_rate",
    "global_norm",
    "heavy_ball_converges",
    "heavy_ball_velocity_step",
    "iteration_matrix",
    "iterations_per_epoch",
    "linear_regression_data",
    "linear_scaling_rule",
    "linear_scaling_warmup",
    "linear_warmup",
    "lion_step",
    "measure_gradient_variance",
    "measure_noise_scale",
    "minibatch_gradient_variance",
    "minibatches",
    "minimize",
    "model_state_bytes",
    "momentum_rate",
    "muon_lr_scale",
    "muon_step",
    "nesterov_velocity_step",
    "newton_schulz",
    "noam",
    "noise_scale_during_training",
    "noise_scale_from_two_batches",
    "one_cycle",
    "optimal_gd",
    "optimal_heavy_ball",
    "optimizer_state_size",
    "polynomial_regression_data",
    "quantize_blockwise",
    "rmsprop_step",
    "schedule_free_adamw_step",
    "sgd_step",
    "sgdr",
    "should_skip_update",
    "simple_noise_scale",
    "softcap",
    "square_root_scaling_rule",
    "step_decay",
    "steps_examples_tradeoff",
    "steps_to_reduce",
    "train",
    "two_class_data",
    "uniform_average_update",
    "warmup_cosine",
    "warmup_stable_decay",
]
