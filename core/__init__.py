"""audiotune core: plain PyTorch training of one config on one fold. Never imports Ray or Optuna."""
