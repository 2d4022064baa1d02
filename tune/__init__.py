"""Ray Tune + Optuna on top of core: cross-validated trials, the search CLI, export and final training."""
