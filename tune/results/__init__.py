"""What a finished search writes and the commands read: the leaderboard, the export (best_config.json), the
aggregate of fold reports, the Pareto front, the plots, the HTML page, and the run folder's storage.

Nothing here imports Ray or the engine (tune.engine): results work on plain rows, files and Ray's result objects
handed in by the caller.
"""
