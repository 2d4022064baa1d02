"""Word-difficulty loss: cross-entropy weighted per clip by 1 + `loss.difficulty_lambda` x difficulty(word).

Some target words are much harder to articulate than others; weighting them up makes the model spend more effort
where clinicians see most errors. difficulty(word) is, by default, the word's abnormal rate in the fold's training
split (never the whole set), i.e. the share of its clips in the positive class (`data.positive_class`, default the
class named `abnormal`; never a guessed class id). A word without training rows gets difficulty 0 (weight 1).
With `loss.difficulty_file`, difficulty comes from a user CSV with the header `word,difficulty` (UTF-8; other
columns ignored), one finite difficulty >= 0 per word; every word of the data must be listed.
The weights are not renormalised: weight = 1 + lambda x difficulty exactly, so lambda = 0 is cross-entropy.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.config import Config
from core.data.batches import Batch
from core.errors import DataError
from core.statistics import FoldStatistics

COLUMNS = ("word", "difficulty")


def read_difficulty_csv(path: str | Path) -> dict[str, float]:
    """word -> difficulty from a `word,difficulty` CSV; DataError naming the file and row for anything malformed."""
    file = Path(path).expanduser()
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in COLUMNS if name not in header]
            if missing:
                raise DataError(f"{file}: loss.difficulty_file needs the header word,difficulty; missing "
                                f"{', '.join(missing)} (found: {', '.join(header) or 'nothing'})")
            reader.fieldnames = header
            table: dict[str, float] = {}
            first_row: dict[str, int] = {}
            for row_number, row in enumerate(reader, start=2):  # row 1 is the header
                word, value = _parse_row(file, row_number, row)
                if word in table:
                    raise DataError(f"{file}: row {row_number}: word {word!r} is listed again "
                                    f"(first on row {first_row[word]})")
                table[word], first_row[word] = value, row_number
    except FileNotFoundError as error:
        raise DataError(f"{file}: loss.difficulty_file not found") from error
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{file}: cannot read loss.difficulty_file ({error})") from error
    return table


def _parse_row(file: Path, row_number: int, row: dict[str, str | None]) -> tuple[str, float]:
    word, text = (row.get("word") or "").strip(), (row.get("difficulty") or "").strip()
    if not word:
        raise DataError(f"{file}: row {row_number}: empty word")
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{file}: row {row_number}: difficulty of {word!r} is {text!r}, not a number") from None
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{file}: row {row_number}: difficulty of {word!r} must be a finite number >= 0, "
                        f"got {text!r}")
    return word, value


def file_difficulty(path: str | Path, words: tuple[str, ...]) -> np.ndarray:
    """[words] difficulty from the CSV, in word-id order; DataError naming the words of the data it lacks."""
    table = read_difficulty_csv(path)
    absent = [word for word in words if word not in table]
    if absent:
        shown = ", ".join(repr(word) for word in absent[:10]) + (" ..." if len(absent) > 10 else "")
        raise DataError(f"{Path(path).expanduser()}: loss.difficulty_file has no row for word(s) of the data: "
                        f"{shown}")
    return np.array([table[word] for word in words], dtype=np.float64)


def difficulty_weights(stats: FoldStatistics, lam: float, path: str = "", positive: int | None = None) -> np.ndarray:
    """[words] 1 + lam x difficulty, difficulty from `path` if given, else the training split's rate of the
    `positive` class."""
    if path and len(stats.words) != stats.num_words:
        raise DataError(f"{path}: loss.difficulty_file needs the word names, but these fold statistics have none "
                        "(build them with FoldStatistics.from_data)")
    if not path and positive is None:
        raise ValueError("difficulty_weights needs the positive class when no difficulty file is given")
    difficulty = file_difficulty(path, stats.words) if path else stats.positive_rate(positive)
    return (1.0 + lam * difficulty).astype(np.float32)


class DifficultyLoss(nn.Module):
    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("weights", torch.from_numpy(weights))

    def forward(self, outputs: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        per_clip = nn.functional.cross_entropy(outputs["logits"].float(), batch.targets, reduction="none")
        return (per_clip * self.weights[batch.word_ids]).mean()


def build(config: Config, stats: FoldStatistics) -> nn.Module:
    positive = None if config.loss.difficulty_file else stats.positive_class(config.data.positive_class)
    return DifficultyLoss(difficulty_weights(stats, config.loss.difficulty_lambda, config.loss.difficulty_file,
                                             positive))
