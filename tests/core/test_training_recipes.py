"""Recipes right in every corner: SpecAugment never masks the age/word rows and its widths mean what they say,
SAM's two passes see one set of features and update BatchNorm statistics once, the featurizer is fp32 under any
autocast, and held-out shares are the shares asked for."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn

from core.config import Config
from core.data.batches import make_batch
from core.data.dataset import AudioData
from core.data.splits import Fold, make_splits
from core.features import SpecAugment
from core.models import MODELS
from core.statistics import FoldStatistics
from core.train import train_fold

ConfigFactory = Callable[..., Config]
CPU = torch.device("cpu")
ROWS = {"features.conditioning": "rows", "features.n_mels": 78}
RESNET = {"model.name": "resnet50", "features.n_mels": 224, "features.n_fft": 1024, "train.batch_size": 2,
          "train.eval_batch_size": 4}


def featurizer_of(config: Config, data: AudioData, train: np.ndarray) -> nn.Module:
    return MODELS.get(config.model.name).featurizer(config, FoldStatistics.from_data(data, train))


# --- 1. the age/word rows join after SpecAugment ----------------------------------------------------------------
def test_spec_augment_never_masks_the_conditioning_rows(toy_data: AudioData,
                                                        toy_config_factory: ConfigFactory) -> None:
    masks = {"augment.time_mask": 40, "augment.time_masks": 2, "augment.freq_mask": 40, "augment.freq_masks": 2}
    config = toy_config_factory(**ROWS, **masks, **{"features.age_momentum": 0.5})
    fold = toy_data.splits.folds[0]
    featurizer = featurizer_of(config, toy_data, fold.train)
    batch = make_batch(toy_data, fold.train[:16], CPU)
    clean = featurizer.eval()(batch)
    torch.manual_seed(0)
    augmented = featurizer.train()(batch)
    stats = FoldStatistics.from_data(toy_data, fold.train)
    ages = (batch.ages - stats.age_min) / (stats.age_max - stats.age_min) * 0.5
    words = batch.word_ids.float() / (stats.num_words - 1)
    frames = augmented.shape[-1]
    assert augmented.shape[1] == 80 and len(set(ages.tolist())) > 1
    torch.testing.assert_close(augmented[:, 78], ages[:, None].expand(-1, frames), rtol=0, atol=0)
    torch.testing.assert_close(augmented[:, 79], words[:, None].expand(-1, frames), rtol=0, atol=0)
    mel_changed = augmented[:, :78] != clean[:, :78]
    assert mel_changed.float().mean() > 0.2, "the mel rows were not masked"
    assert torch.all(augmented[:, :78][mel_changed] == 0)


# --- 5. SpecAugment widths: 0..N inclusive ----------------------------------------------------------------------
@pytest.mark.parametrize("axis", ["freq", "time"])
def test_widest_mask_is_the_configured_width(axis: str) -> None:
    """One mask per example on all-ones features: its width (zeroed bins or frames) runs over 0..N inclusive, about
    equally often, never beyond N, and every bin or frame (the last included) can be covered."""
    widest = 5
    augment = SpecAugment(Config().with_overrides({f"augment.{axis}_mask": widest, f"augment.{axis}_masks": 1})
                          .augment).train()
    torch.manual_seed(0)
    masked = augment(torch.ones(4000, 20, 30)) == 0  # [example, bin, frame]
    along = 1 if axis == "freq" else 2
    widths = masked.any(dim=3 - along).sum(dim=-1)
    assert int(widths.max()) == widest
    counts = torch.bincount(widths)
    assert len(counts) == widest + 1 and int(counts.min()) > 0.8 * len(widths) / (widest + 1)
    covered = masked.any(dim=0).any(dim=3 - along - 1)
    assert bool(covered.all()), f"never masked: {torch.flatnonzero(~covered).tolist()}"


# --- 2. SAM: one set of features per step, BatchNorm statistics updated once -------------------------------------
@contextlib.contextmanager
def model_inputs(kind: type[nn.Module]) -> Iterator[list[torch.Tensor]]:
    """Every features tensor fed to a `kind` module (the model built inside train_fold), in call order."""
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple) -> None:
        if isinstance(module, kind):
            seen.append(args[0].detach().clone())

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def batch_norm_statistics() -> Iterator[dict[int, list[dict[str, torch.Tensor]]]]:
    """id(BatchNorm module) -> its running statistics after each of its forward calls."""
    seen: dict[int, list[dict[str, torch.Tensor]]] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            seen.setdefault(id(module), []).append(
                {name: buffer.detach().clone() for name, buffer in module.named_buffers()})

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def one_batch_fold(data: AudioData, size: int) -> Fold:
    """A fold of `size` training rows (both classes) and no validation: one epoch is exactly one optimiser step."""
    train = data.splits.folds[0].train
    rows = np.concatenate([train[data.targets[train] == 0][: size // 2], train[data.targets[train] == 1]])[:size]
    return Fold(index=0, train=np.sort(rows), valid=np.zeros(0, dtype=np.int64))


def test_sam_passes_see_the_same_features(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**{"optim.name": "sam", "optim.sam_rho": 0.05, "train.epochs": 1,
                                   "train.select": "last", "augment.time_mask": 30, "augment.time_masks": 2,
                                   "augment.freq_mask": 20, "augment.freq_masks": 2})
    kind = type(MODELS.get("whisper").build(config, toy_data.num_outputs))
    with model_inputs(kind) as seen:
        (result,) = train_fold(config, toy_data, one_batch_fold(toy_data, 8))
    assert len(seen) == 2  # the pass at w and SAM's pass at w + e
    assert torch.equal(seen[0], seen[1])
    assert (seen[0] == 0).float().mean() > 0.05  # augmentation did run (that is what would differ)
    assert np.isfinite(result.train_loss)


def test_sam_updates_batch_norm_statistics_once(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """ResNet's running statistics after a SAM step are those of the first pass, at the real weights, only."""
    config = toy_config_factory(**RESNET, **{"optim.name": "sam", "optim.sam_rho": 0.5, "optim.sam_base": "sgd",
                                             "train.epochs": 1, "train.select": "last"})
    with batch_norm_statistics() as seen:
        (result,) = train_fold(config, toy_data, one_batch_fold(toy_data, 2))
    modules = [m for m in result.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(modules) == 53 and set(seen) == {id(m) for m in modules}
    for module in modules:
        calls = seen[id(module)]
        assert len(calls) == 2
        first = calls[0]
        assert int(first["num_batches_tracked"]) == 1 and bool((first["running_mean"] != 0).any())
        for name, value in module.named_buffers():  # after the step: exactly the first pass's statistics
            assert torch.equal(value, first[name]), f"{name} changed after the first pass"


# --- 3. the featurizer runs in fp32 under any autocast ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_featurizer_is_fp32_under_autocast(dtype: torch.dtype, toy_data: AudioData,
                                           toy_config_factory: ConfigFactory) -> None:
    """An all-silent clip in fp16 floored its power at 1e-10, which is 0 in fp16: log10 gave -inf."""
    fold = toy_data.splits.folds[0]
    featurizer = featurizer_of(toy_config_factory(), toy_data, fold.train).eval()
    speech = make_batch(toy_data, fold.train[:4], CPU)
    silent = dataclasses.replace(speech, waveforms=torch.zeros_like(speech.waveforms))
    for batch in (silent, speech):
        reference = featurizer(batch)
        with torch.autocast("cpu", dtype=dtype):
            features = featurizer(batch)
        assert features.dtype == torch.float32
        assert bool(torch.isfinite(features).all())
        torch.testing.assert_close(features, reference, rtol=0, atol=0)


# --- 4. held-out shares are the shares asked for -----------------------------------------------------------------
def speaker_table(speakers: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """(labels, speaker of each row, most clips of one speaker): 2..6 clips a speaker, a third of them disordered
    (one label per speaker, as severity is)."""
    sizes = np.random.default_rng(seed).integers(2, 7, speakers)
    groups = np.repeat([f"s{i:02d}" for i in range(speakers)], sizes)
    labels = np.repeat(np.where(np.arange(speakers) % 3 == 0, "abnormal", "normal"), sizes)
    return labels, groups, int(sizes.max())


def held_out_speakers_apart(held: np.ndarray, rest: np.ndarray, groups: np.ndarray) -> bool:
    return not set(groups[held]) & set(groups[rest])


@pytest.mark.parametrize("share", [0.3, 0.4, 0.6])
def test_test_and_valid_size_hold_out_the_share_asked(share: float) -> None:
    labels, groups, largest = speaker_table()
    n = len(labels)
    splits = make_splits(labels, groups, k_fold=3, test_size=share, valid_size=0.2, seed=1)
    assert abs(len(splits.test) / n - share) <= largest / n, f"test share {len(splits.test) / n:.3f}"
    assert splits.test_share == pytest.approx(len(splits.test) / n)
    assert held_out_speakers_apart(splits.test, splits.development, groups)
    assert set(labels[splits.test]) == set(labels[splits.development]) == {"abnormal", "normal"}
    # k_fold == 1: the one fold's valid part is `valid_size` of the development rows.
    splits = make_splits(labels, groups, k_fold=1, test_size=0.2, valid_size=share, seed=1)
    (fold,) = splits.folds
    development = len(splits.development)
    assert abs(len(fold.valid) / development - share) <= largest / development
    assert fold.valid_share == pytest.approx(len(fold.valid) / development)
    assert held_out_speakers_apart(fold.valid, fold.train, groups)
    assert set(labels[fold.valid]) == {"abnormal", "normal"}


@pytest.mark.parametrize("share", [0.3, 0.4, 0.6])
def test_toy_test_share(share: float, toy_data: AudioData) -> None:
    """The toy set: 12 speakers of 3 clips each, so one speaker's worth is 3 / 36 of the rows."""
    labels, groups = toy_data.targets, toy_data.speakers
    assert groups is not None
    splits = make_splits(labels, groups, k_fold=3, test_size=share, valid_size=0.2, seed=0)
    obtained = len(splits.test) / len(labels)
    assert abs(obtained - share) <= 3 / 36 + 1e-9, f"test share {obtained:.3f}"
    assert splits.test_share == pytest.approx(obtained)
    assert held_out_speakers_apart(splits.test, splits.development, groups)
    for fold in splits.folds:
        assert held_out_speakers_apart(fold.valid, fold.train, groups)


def test_same_seed_same_held_out_rows() -> None:
    labels, groups, _ = speaker_table()
    runs = [make_splits(labels.copy(), groups.copy(), k_fold=1, test_size=0.4, valid_size=0.3, seed=5)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].test, runs[1].test)
    np.testing.assert_array_equal(runs[0].folds[0].valid, runs[1].folds[0].valid)
    other = make_splits(labels, groups, k_fold=1, test_size=0.4, valid_size=0.3, seed=6)
    assert not np.array_equal(other.test, runs[0].test)
