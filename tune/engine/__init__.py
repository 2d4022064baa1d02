"""The search engine: Ray Tune + Optuna (arguments, experiment, search, trainable, folds, cluster, study, ...).

Ray reads some settings (loopback-only listeners among them) once, when it is imported; they are set here, before
any module of this package imports ray. The caller's environment wins.
"""

from tune.engine.cluster import set_ray_environment

set_ray_environment()
