"""Ray Tune + Optuna layer: CLIs, the cross-validation trainable, aggregation, export, submission.

Ray reads some settings (loopback-only listeners among them) once, when it is imported; they are set here, before
any module of this package imports ray. The caller's environment wins.
"""

from tune.cluster import set_ray_environment

set_ray_environment()
