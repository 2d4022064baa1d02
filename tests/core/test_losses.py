"""Losses: plain CE and the per-word balancing loss (weights from the fold's training rows only); focal,
class-balanced, difficulty and contrastive losses against hand formulas, statistics from the fold's training split
only, config validation, and one real training epoch each through `train_fold`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core.config import Config
from core.data.batches import Batch
from core.data.dataset import AudioData
from core.data.samplers import SAMPLERS
from core.errors import ConfigError, DataError
from core.losses import LOSSES
from core.losses.class_balanced import class_balanced_weights
from core.losses.contrastive import same_word_contrastive
from core.statistics import FoldStatistics
from core.train import train_fold

# A small training table: (word, label) -> count. Word 2 is never said wrong (label 1) in training.
TABLE = {(0, 0): 6, (0, 1): 2, (1, 0): 1, (1, 1): 3, (2, 0): 4, (2, 1): 0}


def batch_of(targets: list[int], words: list[int]) -> Batch:
    n = len(targets)
    return Batch(rows=np.arange(n), waveforms=torch.zeros(n, 8), lengths=torch.full((n,), 8),
                 targets=torch.tensor(targets), word_ids=torch.tensor(words), ages=torch.full((n,), math.nan))


def hand_cross_entropy(logits: np.ndarray, targets: list[int]) -> np.ndarray:
    """-log softmax(logits)[target], per row, in float64."""
    out = []
    for row, target in zip(logits.astype(np.float64), targets, strict=True):
        log_norm = math.log(sum(math.exp(v) for v in row))
        out.append(log_norm - row[target])
    return np.array(out)


def table_rows() -> tuple[np.ndarray, np.ndarray]:
    words, targets = [], []
    for (word, label), count in TABLE.items():
        words += [word] * count
        targets += [label] * count
    return np.array(targets), np.array(words)


def hand_weights(smoothing: Fraction) -> dict[tuple[int, int], float]:
    """1 / P(label | word) with add-k smoothing, scaled so the mean over the training rows is exactly 1."""
    totals = {w: sum(c for (ww, _), c in TABLE.items() if ww == w) for w in range(3)}
    raw = {}
    for (word, label), count in TABLE.items():
        probability = (count + smoothing) / (totals[word] + 2 * smoothing)
        raw[(word, label)] = 1 / probability if probability else Fraction(0)
    mean = sum(raw[key] * count for key, count in TABLE.items()) / sum(TABLE.values())
    return {key: float(value / mean) for key, value in raw.items()}


def test_cross_entropy_matches_hand_computation() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0], [0.0, 4.0]])
    targets = [0, 1, 0, 1]
    stats = FoldStatistics.from_rows(np.array(targets), np.zeros(4, int), 2, 1, np.arange(4))
    loss = LOSSES.get("ce")(Config(), stats)({"logits": logits}, batch_of(targets, [0] * 4))
    assert loss.item() == pytest.approx(hand_cross_entropy(logits.numpy(), targets).mean(), rel=1e-6)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor(targets)).item())


def test_fold_statistics_count_only_the_given_rows() -> None:
    targets, words = table_rows()
    extra_targets, extra_words = np.array([1, 1, 1]), np.array([2, 2, 2])  # rows outside the training split
    all_targets, all_words = np.concatenate([targets, extra_targets]), np.concatenate([words, extra_words])
    stats = FoldStatistics.from_rows(all_targets, all_words, 2, 3, np.arange(len(targets)))
    for (word, label), count in TABLE.items():
        assert stats.word_label_counts[word, label] == count
    assert stats.class_counts.tolist() == [11, 5]


@pytest.mark.parametrize("smoothing", [Fraction(1), Fraction(1, 2), Fraction(0)])
def test_balancing_loss_matches_hand_computation(smoothing: Fraction) -> None:
    targets, words = table_rows()
    stats = FoldStatistics.from_rows(targets, words, 2, 3, np.arange(len(targets)))
    config = Config().with_overrides({"loss.name": "balancing", "loss.smoothing": float(smoothing)})
    loss_fn = LOSSES.get("balancing")(config, stats)
    expected_weights = hand_weights(smoothing)
    for (word, label), weight in expected_weights.items():
        assert loss_fn.weights[word, label].item() == pytest.approx(weight, rel=1e-6), (word, label)
    # Mean weight over the training rows is 1.
    assert np.mean([expected_weights[(w, t)] for w, t in zip(words, targets, strict=True)]) == pytest.approx(1.0)
    assert float(loss_fn.weights[torch.tensor(words), torch.tensor(targets)].mean()) == pytest.approx(1.0)
    # The loss of a batch is the mean of CE x weight.
    batch_targets, batch_words = [0, 1, 1, 0, 0], [0, 0, 1, 1, 2]
    logits = torch.tensor([[1.0, 0.0], [0.2, -0.3], [-1.0, 2.0], [0.0, 0.0], [3.0, -2.0]])
    ce = hand_cross_entropy(logits.numpy(), batch_targets)
    weights = np.array([expected_weights[(w, t)] for w, t in zip(batch_words, batch_targets, strict=True)])
    loss = loss_fn({"logits": logits}, batch_of(batch_targets, batch_words))
    assert loss.item() == pytest.approx(float(np.mean(ce * weights)), rel=1e-6)
    assert math.isfinite(loss.item())


def test_rare_label_of_a_word_weighs_more() -> None:
    """The point of the loss: an error on a word that is usually said right counts more than a common one."""
    targets, words = table_rows()
    stats = FoldStatistics.from_rows(targets, words, 2, 3, np.arange(len(targets)))
    weights = LOSSES.get("balancing")(Config().with_overrides({"loss.name": "balancing"}), stats).weights
    assert weights[0, 1] > weights[0, 0]  # word 0: label 1 is rarer
    assert weights[1, 0] > weights[1, 1]  # word 1: label 0 is rarer


def fold_weights_by_hand(data: AudioData, rows: np.ndarray, smoothing: float) -> np.ndarray:
    """Balancing weights from the manifest's strings (pandas), independent of FoldStatistics."""
    table = data.manifest.table.iloc[rows]
    counts = pd.crosstab(table["word"], table["label"]).reindex(index=data.words, columns=data.classes,
                                                                fill_value=0).to_numpy(float)
    probability = (counts + smoothing) / (counts + smoothing).sum(axis=1, keepdims=True)
    raw = 1 / probability
    return raw / ((raw * counts).sum() / counts.sum())


def test_balancing_weights_follow_the_training_split(toy_data: AudioData) -> None:
    """Weights are computed per fold from its training rows: different folds, different weights."""
    config = Config().with_overrides({"loss.name": "balancing", "loss.smoothing": 1.0})
    built = []
    for fold in toy_data.splits.folds[:2]:
        stats = FoldStatistics.from_rows(toy_data.targets, toy_data.word_ids, len(toy_data.classes),
                                         len(toy_data.words), fold.train)
        weights = LOSSES.get("balancing")(config, stats).weights.numpy()
        np.testing.assert_allclose(weights, fold_weights_by_hand(toy_data, fold.train, 1.0), rtol=1e-6)
        built.append(weights)
    assert not np.allclose(built[0], built[1])
    everything = fold_weights_by_hand(toy_data, np.arange(len(toy_data.targets)), 1.0)
    assert not np.allclose(built[0], everything)  # not computed from the whole set either


LOGITS = [[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0], [0.0, 4.0], [1.5, 0.2]]
TARGETS = [0, 1, 0, 1, 1]


def softmax_p(row: list[float], target: int) -> float:
    return math.exp(row[target]) / sum(math.exp(v) for v in row)


def hand_ce(logits: list[list[float]], targets: list[int]) -> list[float]:
    return [-math.log(softmax_p(row, t)) for row, t in zip(logits, targets, strict=True)]


def hand_focal(logits: list[list[float]], targets: list[int], gamma: float) -> list[float]:
    return [-((1 - softmax_p(row, t)) ** gamma) * math.log(softmax_p(row, t))
            for row, t in zip(logits, targets, strict=True)]


def stats_for(targets: list[int], word_ids: list[int], num_classes: int, num_words: int,
              **names: tuple[str, ...]) -> FoldStatistics:
    """Training statistics of a hand-made split; `names` may add word and class names (as from_data does)."""
    rows = np.arange(len(targets))
    stats = FoldStatistics.from_rows(np.array(targets), np.array(word_ids), num_classes, num_words, rows)
    return dataclasses.replace(stats, **names)


def loss_of(name: str, stats: FoldStatistics, logits: list[list[float]], targets: list[int], words: list[int],
            **overrides: object) -> float:
    config = Config().with_overrides({"loss.name": name, **overrides}).validate()
    outputs = {"logits": torch.tensor(logits)}
    return LOSSES.get(name)(config, stats)(outputs, batch_of(targets, words)).item()


# --- focal ------------------------------------------------------------------------------------------------------
def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    stats = stats_for(TARGETS, [0] * 5, 2, 1)
    value = loss_of("focal", stats, LOGITS, TARGETS, [0] * 5, **{"loss.gamma": 0.0})
    torch_ce = torch.nn.functional.cross_entropy(torch.tensor(LOGITS), torch.tensor(TARGETS)).item()
    assert value == pytest.approx(np.mean(hand_ce(LOGITS, TARGETS)), rel=1e-6)
    assert value == pytest.approx(torch_ce, rel=1e-6)


@pytest.mark.parametrize(("alpha", "classes", "positive"), [
    (0.0, ("abnormal", "normal"), 0), (0.25, ("normal", "abnormal"), 1), (0.25, ("abnormal", "normal"), 0)])
def test_focal_matches_hand_formula(alpha: float, classes: tuple[str, str], positive: int) -> None:
    stats = stats_for(TARGETS, [0] * 5, 2, 1, classes=classes)
    value = loss_of("focal", stats, LOGITS, TARGETS, [0] * 5, **{"loss.gamma": 2.0, "loss.alpha": alpha})
    # alpha weighs the positive class (named `abnormal` here, whatever its id), 1 - alpha the other; 0: none.
    weights = [1.0] * 5 if alpha == 0 else [alpha if t == positive else 1 - alpha for t in TARGETS]
    expected = np.mean([w * f for w, f in zip(weights, hand_focal(LOGITS, TARGETS, 2.0), strict=True)])
    assert value == pytest.approx(expected, rel=1e-6)
    assert value < np.mean(hand_ce(LOGITS, TARGETS))  # focusing only ever shrinks each clip's term


def test_focal_alpha_with_three_classes_weighs_the_named_positive_class_by_alpha() -> None:
    logits = [[0.3, -0.2, 1.0], [2.0, 0.1, -1.0], [0.0, 0.0, 0.5]]
    targets = [2, 0, 1]
    stats = stats_for(targets, [0, 0, 0], 3, 1, classes=("mild", "none", "severe"))
    value = loss_of("focal", stats, logits, targets, [0, 0, 0],
                    **{"loss.gamma": 1.5, "loss.alpha": 0.3, "data.positive_class": "severe"})
    weights = [0.3, 0.7, 0.7]  # targets 2 (severe: alpha), 0 and 1 (1 - alpha)
    expected = np.mean([w * f for w, f in zip(weights, hand_focal(logits, targets, 1.5), strict=True)])
    assert value == pytest.approx(expected, rel=1e-6)


def test_focal_alpha_needs_a_named_positive_class() -> None:
    stats = stats_for(TARGETS, [0] * 5, 2, 1, classes=("ssd", "typical"))
    with pytest.raises(ConfigError, match=r"data\.positive_class is not set and no class is named 'abnormal'"):
        loss_of("focal", stats, LOGITS, TARGETS, [0] * 5, **{"loss.alpha": 0.25})


def test_focal_gradient_stays_finite_when_a_clip_is_certain() -> None:
    """(1 - p)^gamma with gamma < 1 has an infinite slope at p = 1, which float32 reaches for large margins."""
    logits = torch.tensor([[60.0, -60.0], [0.2, 0.1]], requires_grad=True)
    config = Config().with_overrides({"loss.name": "focal", "loss.gamma": 0.5})
    loss = LOSSES.get("focal")(config, stats_for([0, 1], [0, 0], 2, 1))({"logits": logits}, batch_of([0, 1], [0, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# --- class-balanced ---------------------------------------------------------------------------------------------
def hand_cb_weights(counts: list[int], beta: Fraction) -> list[float]:
    """(1 - beta) / (1 - beta^n), scaled to sum to the number of classes present; exact fractions."""
    raw = [(1 - beta) / (1 - beta**n) if n else Fraction(0) for n in counts]
    present = sum(1 for n in counts if n)
    return [float(w * present / sum(raw)) for w in raw]


@pytest.mark.parametrize(("counts", "beta"), [([6, 2, 1], Fraction(9, 10)), ([40, 3], Fraction(99, 100)),
                                              ([5, 0, 2], Fraction(1, 2))])
def test_class_balanced_weights_match_hand_computation(counts: list[int], beta: Fraction) -> None:
    targets = [c for c, n in enumerate(counts) for _ in range(n)]
    stats = stats_for(targets, [0] * len(targets), len(counts), 1)
    weights = class_balanced_weights(stats.class_counts, float(beta))
    np.testing.assert_allclose(weights, hand_cb_weights(counts, beta), rtol=1e-6)
    assert weights.sum() == pytest.approx(sum(1 for n in counts if n), rel=1e-6)
    for i, j in zip(*np.nonzero(np.less.outer(counts, counts)), strict=True):
        if counts[i]:
            assert weights[i] > weights[j]  # the rarer present class weighs more


@pytest.mark.parametrize("base", ["ce", "focal"])
def test_class_balanced_loss_is_weighted_ce_or_focal(base: str) -> None:
    counts = [7, 2]  # a training split with 7 clips of class 0 and 2 of class 1
    train_targets = [0] * 7 + [1] * 2
    stats = stats_for(train_targets, [0] * 9, 2, 1)
    value = loss_of("class_balanced", stats, LOGITS, TARGETS, [0] * 5,
                    **{"loss.beta": 0.9, "loss.cb_base": base, "loss.gamma": 2.0, "loss.alpha": 0.25})
    weights = hand_cb_weights(counts, Fraction(9, 10))
    terms = hand_ce(LOGITS, TARGETS) if base == "ce" else hand_focal(LOGITS, TARGETS, 2.0)  # alpha is not used
    expected = np.mean([weights[t] * term for t, term in zip(TARGETS, terms, strict=True)])
    assert value == pytest.approx(expected, rel=1e-6)
    assert weights[1] > weights[0]


# --- difficulty -------------------------------------------------------------------------------------------------
# Training table: (word, class) -> count, classes named ("abnormal", "normal"): class 0 is the abnormal one.
DIFFICULTY_TABLE = {(0, 0): 2, (0, 1): 6, (1, 0): 3, (1, 1): 1, (2, 0): 0, (2, 1): 4}  # word 3: no training rows


def difficulty_stats(classes: tuple[str, ...]) -> FoldStatistics:
    targets = [c for (_, c), n in DIFFICULTY_TABLE.items() for _ in range(n)]
    words = [w for (w, _), n in DIFFICULTY_TABLE.items() for _ in range(n)]
    return stats_for(targets, words, 2, 4, classes=classes, words=("rabbit", "sun", "cat", "토끼"))


@pytest.mark.parametrize(("classes", "positive", "rates"), [
    (("abnormal", "normal"), "", [2 / 8, 3 / 4, 0.0, 0.0]),  # the class named abnormal (id 0)
    (("Normal", "ABNORMAL"), "", [6 / 8, 1 / 4, 1.0, 0.0]),  # named in any case (id 1)
    (("ok", "not_ok"), "not_ok", [6 / 8, 1 / 4, 1.0, 0.0]),  # no class named abnormal: data.positive_class names it
    (("ok", "not_ok"), "ok", [2 / 8, 3 / 4, 0.0, 0.0]),
])
def test_difficulty_weights_from_the_training_table(classes: tuple[str, ...], positive: str,
                                                    rates: list[float]) -> None:
    stats = difficulty_stats(classes)
    config = Config().with_overrides({"loss.name": "difficulty", "loss.difficulty_lambda": 2.0,
                                      "data.positive_class": positive})
    loss_fn = LOSSES.get("difficulty")(config, stats)
    expected = [1 + 2.0 * rate for rate in rates]
    np.testing.assert_allclose(loss_fn.weights.numpy(), expected, rtol=1e-6)
    words = [0, 1, 2, 3, 1]
    value = loss_fn({"logits": torch.tensor(LOGITS)}, batch_of(TARGETS, words)).item()
    ce = hand_ce(LOGITS, TARGETS)
    assert value == pytest.approx(np.mean([expected[w] * c for w, c in zip(words, ce, strict=True)]), rel=1e-6)


def test_difficulty_never_guesses_the_positive_class() -> None:
    config = Config().with_overrides({"loss.name": "difficulty"})
    with pytest.raises(ConfigError, match=r"data\.positive_class is not set and no class is named 'abnormal'"):
        LOSSES.get("difficulty")(config, difficulty_stats(("ok", "not_ok")))


def test_difficulty_lambda_zero_is_cross_entropy() -> None:
    value = loss_of("difficulty", difficulty_stats(("abnormal", "normal")), LOGITS, TARGETS, [0, 1, 2, 3, 0],
                    **{"loss.difficulty_lambda": 0.0})
    assert value == pytest.approx(np.mean(hand_ce(LOGITS, TARGETS)), rel=1e-6)


def write_csv(folder: Path, text: str) -> Path:
    path = folder / "difficulty.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_difficulty_weights_from_a_csv(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "word,difficulty,note\ncat,0.5,easy\n토끼,1.25,\nrabbit,2,\nsun, 0 ,\nextra,9,\n")
    config = Config().with_overrides({"loss.name": "difficulty", "loss.difficulty_lambda": 0.8,
                                      "loss.difficulty_file": str(path)})
    weights = LOSSES.get("difficulty")(config, difficulty_stats(("abnormal", "normal"))).weights.numpy()
    # words by id: rabbit, sun, cat, 토끼 (a word not in the data, "extra", is ignored)
    np.testing.assert_allclose(weights, [1 + 0.8 * 2, 1 + 0.8 * 0, 1 + 0.8 * 0.5, 1 + 0.8 * 1.25], rtol=1e-6)


@pytest.mark.parametrize(("text", "needles"), [
    ("word,difficulty\nrabbit,1\ncat,0.5\n토끼,1\n", ["'sun'", "no row for word"]),
    ("word,difficulty\nrabbit,1\nsun,hard\ncat,0.5\n토끼,1\n", ["row 3", "'hard'", "sun"]),
    ("word,difficulty\nrabbit,1\nsun,0\ncat,-0.5\n토끼,1\n", ["row 4", ">= 0"]),
    ("word,difficulty\nrabbit,1\nsun,nan\ncat,1\n토끼,1\n", ["row 3", "finite"]),
    ("word,difficulty\nrabbit,1\nsun\ncat,1\n토끼,1\n", ["row 3", "not a number"]),
    ("word,difficulty\nrabbit,1\nsun,1\nrabbit,2\ncat,1\n토끼,1\n", ["row 4", "'rabbit'", "row 2"]),
    ("word,difficulty\nrabbit,1\n,1\n", ["row 3", "empty word"]),
    ("name,score\nrabbit,1\n", ["word,difficulty", "missing word, difficulty"]),
    ("", ["word,difficulty"]),
])
def test_a_bad_difficulty_csv_is_a_data_error_naming_file_and_row(tmp_path: Path, text: str,
                                                                   needles: list[str]) -> None:
    path = write_csv(tmp_path, text)
    config = Config().with_overrides({"loss.name": "difficulty", "loss.difficulty_file": str(path)})
    with pytest.raises(DataError) as error:
        LOSSES.get("difficulty")(config, difficulty_stats(("abnormal", "normal")))
    assert str(path) in str(error.value)
    for needle in needles:
        assert needle in str(error.value)


def test_a_missing_difficulty_csv_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.csv"
    config = Config().with_overrides({"loss.name": "difficulty", "loss.difficulty_file": str(path)})
    with pytest.raises(DataError, match="nowhere.csv: loss.difficulty_file not found"):
        LOSSES.get("difficulty")(config, difficulty_stats(("abnormal", "normal")))


# --- contrastive ------------------------------------------------------------------------------------------------
def test_contrastive_matches_hand_computation() -> None:
    """Clips 0, 1, 2 say word 0 (labels 0, 0, 1); clip 3 says word 1 alone. Only clips 0 and 1 have a positive.
    cosines: (0,1) = 0.6, (0,2) = 0, (1,2) = 0.8; temperature 0.5 doubles them."""
    embeddings = torch.tensor([[1.0, 0.0], [1.8, 2.4], [0.0, 2.0], [-1.0, 1.0]])  # norms differ on purpose
    words, targets = [0, 0, 0, 1], [0, 0, 1, 1]
    anchor0 = math.log(1 + math.exp(0.0 - 1.2))  # -log(e^1.2 / (e^1.2 + e^0))
    anchor1 = math.log(1 + math.exp(1.6 - 1.2))  # -log(e^1.2 / (e^1.2 + e^1.6))
    term = (anchor0 + anchor1) / 2
    value = same_word_contrastive(embeddings, torch.tensor(words), torch.tensor(targets), 0.5).item()
    assert value == pytest.approx(term, rel=1e-6)

    logits = LOGITS[:4]
    config = Config().with_overrides({"loss.name": "contrastive", "loss.contrastive_weight": 0.3,
                                      "loss.temperature": 0.5})
    loss_fn = LOSSES.get("contrastive")(config, stats_for(targets, words, 2, 2))
    total = loss_fn({"logits": torch.tensor(logits), "embedding": embeddings}, batch_of(targets, words)).item()
    assert total == pytest.approx(np.mean(hand_ce(logits, targets)) + 0.3 * term, rel=1e-6)


def test_contrastive_averages_over_several_positives() -> None:
    """Four clips of one word on the unit circle at 0, 60, 90 and 180 degrees, labels 0, 0, 0, 1; temperature 1."""
    angles = [0.0, 60.0, 90.0, 180.0]
    embeddings = torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in angles])
    r3 = math.sqrt(3) / 2

    def lse(*values: float) -> float:
        return math.log(sum(math.exp(v) for v in values))

    anchor0 = lse(0.5, 0.0, -1.0) - (0.5 + 0.0) / 2  # candidates 1, 2, 3; positives 1, 2
    anchor1 = lse(0.5, r3, -0.5) - (0.5 + r3) / 2  # candidates 0, 2, 3; positives 0, 2
    anchor2 = lse(0.0, r3, 0.0) - (0.0 + r3) / 2  # candidates 0, 1, 3; positives 0, 1
    value = same_word_contrastive(embeddings, torch.zeros(4, dtype=torch.long), torch.tensor([0, 0, 0, 1]), 1.0)
    assert value.item() == pytest.approx((anchor0 + anchor1 + anchor2) / 3, rel=1e-6)


def test_contrastive_without_usable_pairs_is_cross_entropy() -> None:
    embeddings = torch.randn(4, 6)
    words, targets = [0, 1, 1, 2], [0, 0, 1, 1]  # word 1 has a pair, but of two labels: no positive
    config = Config().with_overrides({"loss.name": "contrastive", "loss.contrastive_weight": 1.0})
    loss_fn = LOSSES.get("contrastive")(config, stats_for(targets, words, 2, 3))
    value = loss_fn({"logits": torch.tensor(LOGITS[:4]), "embedding": embeddings}, batch_of(targets, words)).item()
    assert value == pytest.approx(np.mean(hand_ce(LOGITS[:4], targets)), rel=1e-6)


def test_contrastive_gradient_pulls_positives_together_and_pushes_the_other_label_away() -> None:
    embeddings = torch.tensor([[1.0, 0.0, 0.2], [0.6, 0.8, 0.0], [0.3, 0.1, 1.0], [-1.0, 1.0, 0.5]],
                              requires_grad=True)
    words, targets = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 1])

    def cosine(z: torch.Tensor, i: int, j: int) -> float:
        return torch.nn.functional.cosine_similarity(z[i], z[j], dim=0).item()

    before = (cosine(embeddings, 0, 1), cosine(embeddings, 0, 2))
    same_word_contrastive(embeddings, words, targets, 0.2).backward()
    moved = embeddings.detach() - 0.05 * embeddings.grad
    assert cosine(moved, 0, 1) > before[0]
    assert cosine(moved, 0, 2) < before[1]
    assert torch.equal(embeddings.grad[3], torch.zeros(3))  # clip 3 has no same-word partner


# --- statistics come from the fold's training split -------------------------------------------------------------
def abnormal_rate_by_hand(data: AudioData, rows: np.ndarray) -> np.ndarray:
    """Per-word abnormal share from the manifest's strings (pandas), independent of FoldStatistics."""
    table = data.manifest.table.iloc[rows]
    return (table["label"] == "abnormal").groupby(table["word"]).mean().reindex(data.words).to_numpy(float)


def test_loss_statistics_follow_the_training_split(toy_data: AudioData) -> None:
    config = Config().with_overrides({"loss.name": "difficulty", "loss.difficulty_lambda": 1.0, "loss.beta": 0.9})
    difficulty, balanced = [], []
    for fold in toy_data.splits.folds:
        stats = FoldStatistics.from_data(toy_data, fold.train)
        weights = LOSSES.get("difficulty")(config, stats).weights.numpy()
        np.testing.assert_allclose(weights, 1 + abnormal_rate_by_hand(toy_data, fold.train), rtol=1e-6)
        counts = pd.Series(toy_data.manifest.table["label"].iloc[fold.train]).value_counts()
        cb = LOSSES.get("class_balanced")(config, stats).class_weights.numpy()
        np.testing.assert_allclose(cb, hand_cb_weights([int(counts[c]) for c in toy_data.classes], Fraction(9, 10)),
                                   rtol=1e-6)
        difficulty.append(weights)
        balanced.append(cb)
    assert any(not np.allclose(difficulty[0], other) for other in difficulty[1:])
    assert any(not np.allclose(balanced[0], other) for other in balanced[1:])  # stratified folds: counts vary less
    everything = 1 + abnormal_rate_by_hand(toy_data, np.arange(len(toy_data.targets)))
    assert not np.allclose(difficulty[0], everything)


# --- config validation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value"), [
    ("loss.gamma", -0.1), ("loss.alpha", 1.0), ("loss.alpha", -0.2), ("loss.beta", 1.0), ("loss.beta", 0.0),
    ("loss.cb_base", "mse"), ("loss.difficulty_lambda", -1.0), ("loss.contrastive_weight", -0.5),
    ("loss.temperature", 0.0), ("loss.gamma", float("nan")),
])
def test_bad_loss_parameters_are_config_errors_naming_the_field(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}="):
        Config().with_overrides({key: value}).validate()


def test_edge_values_are_accepted() -> None:
    Config().with_overrides({"loss.gamma": 0.0, "loss.alpha": 0.0, "loss.beta": 0.5, "loss.cb_base": "focal",
                             "loss.difficulty_lambda": 0.0, "loss.contrastive_weight": 0.0,
                             "train.sampler": "word_pairs"}).validate()


# --- one real epoch each ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    {"loss.name": "focal", "loss.gamma": 2.0, "loss.alpha": 0.25},
    {"loss.name": "class_balanced", "loss.beta": 0.99},
    {"loss.name": "class_balanced", "loss.beta": 0.99, "loss.cb_base": "focal"},
    {"loss.name": "difficulty", "loss.difficulty_lambda": 2.0},
    {"loss.name": "difficulty", "loss.difficulty_file": "CSV"},
    {"loss.name": "contrastive", "train.sampler": "word_pairs", "loss.contrastive_weight": 0.5},
], ids=["focal", "class_balanced", "class_balanced_focal", "difficulty", "difficulty_csv", "contrastive"])
def test_each_loss_trains_an_epoch(overrides: dict[str, object], toy_data: AudioData,
                                   toy_config_factory: Callable[..., Config], tmp_path: Path) -> None:
    if overrides.get("loss.difficulty_file") == "CSV":
        overrides = {**overrides, "loss.difficulty_file": str(write_csv(tmp_path, "word,difficulty\nrabbit,1\n"
                                                                                   "sun,0.2\ncat,3\n"))}
    config = toy_config_factory(**{"train.epochs": 1, **overrides})
    fold = toy_data.splits.folds[0]
    results = list(train_fold(config, toy_data, fold))
    assert len(results) == 1 and math.isfinite(results[0].train_loss) and results[0].train_loss > 0
    assert set(results[0].metrics) >= {"uar"}
    if config.train.sampler == "word_pairs":  # the contrastive term had pairs to work on
        batches = list(SAMPLERS.get("word_pairs")(toy_data, fold.train, config.train.batch_size,
                                                   np.random.default_rng(0)))
        assert any(has_positive_pair(toy_data, rows) for rows in batches)


def has_positive_pair(data: AudioData, rows: np.ndarray) -> bool:
    keys = list(zip(data.word_ids[rows].tolist(), data.targets[rows].tolist(), strict=True))
    return len(set(keys)) < len(keys)
