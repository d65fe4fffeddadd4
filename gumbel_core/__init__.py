"""gumbel_core: Gumbel-softmax sampling, categorical gradient estimators and an online GAN.

Pure PyTorch: tensors in, tensors out; randomness comes in as a ``torch.Generator`` or a seed.
"""

from gumbel_core.counting import CountingEstimator
from gumbel_core.distances import kl_divergence, total_variation
from gumbel_core.drift import DriftDetector
from gumbel_core.estimators import (
    ESTIMATORS,
    CategoricalEstimator,
    GappedStraightThrough,
    GumbelRao,
    ReinMax,
    SoftGumbel,
    StraightThroughGumbel,
    conditional_gumbel,
    get_estimator,
)
from gumbel_core.gan import CategoricalGAN, GANConfig
from gumbel_core.noise import exponential_noise, gumbel_noise, gumbel_noise_like, safe_uniform
from gumbel_core.online import LearnerConfig, OnlineGAN, StepInputs, StepStats
from gumbel_core.sampling import gumbel_max
from gumbel_core.schedules import (
    SCHEDULES,
    ConstantSchedule,
    CosineSchedule,
    ExponentialSchedule,
    LinearSchedule,
    TemperatureSchedule,
    default_schedule,
    make_schedule,
)
from gumbel_core.softmax import (
    gumbel_softmax,
    log_gumbel_softmax,
    relaxed_sample,
    straight_through,
)

__all__ = [
    "CategoricalEstimator",
    "CategoricalGAN",
    "ConstantSchedule",
    "CosineSchedule",
    "CountingEstimator",
    "DriftDetector",
    "ESTIMATORS",
    "ExponentialSchedule",
    "GANConfig",
    "GappedStraightThrough",
    "GumbelRao",
    "LearnerConfig",
    "LinearSchedule",
    "OnlineGAN",
    "ReinMax",
    "SCHEDULES",
    "SoftGumbel",
    "StepInputs",
    "StepStats",
    "StraightThroughGumbel",
    "TemperatureSchedule",
    "conditional_gumbel",
    "default_schedule",
    "exponential_noise",
    "get_estimator",
    "gumbel_max",
    "gumbel_noise",
    "gumbel_noise_like",
    "gumbel_softmax",
    "kl_divergence",
    "log_gumbel_softmax",
    "make_schedule",
    "relaxed_sample",
    "safe_uniform",
    "straight_through",
    "total_variation",
]
