"""The commands (run, final, predict, report, submit and `audiotune`), over two rooms:

- tune/engine/: the search engine on Ray Tune + Optuna (the only part that imports Ray);
- tune/results/: what a search writes (leaderboard, export, plots, the page), which final/predict/report read too.

Importing this package does nothing: `final`, `predict` and `report` never start Ray or set its environment.
"""
