"""Age and word conditioning: statistics from the training rows, the original's spectrogram rows (values by hand,
joined after SpecAugment, Whisper's input widened), learned embeddings (age and word move the output), every
model trains with them, and a saved model keeps its age range."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.checkpoints import real_weights

from core.config import Config
from core.data.batches import Batch, make_batch
from core.data.dataset import AudioData
from core.data.splits import Fold
from core.errors import ConfigError, DataError
from core.model_folder import load_model_folder, save_model_folder
from core.models import MODELS, forward_batch
from core.statistics import FoldStatistics
from core.train import train_fold
from tune.final import train_final

ConfigFactory = Callable[..., Config]
CPU = torch.device("cpu")
ROWS = {"features.conditioning": "rows", "features.n_mels": 78}
EMBED = {"features.conditioning": "embed", "features.embed_dim": 8}
RESNET = {"model.name": "resnet50", "features.n_fft": 1024, "train.batch_size": 2, "train.eval_batch_size": 4}


def manifest(data: AudioData) -> pd.DataFrame:
    """The manifest as written, read independently of AudioData."""
    return pd.read_csv(data.manifest.source)


def hand_codes(data: AudioData, train: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalised age, word code) of `rows`: age over the training rows' min..max, word index / (words - 1)."""
    table = manifest(data)
    train_ages = table["age"].to_numpy()[train]
    low, high = train_ages.min(), train_ages.max()
    words = sorted(set(table["word"]))
    ages = (table["age"].to_numpy()[rows] - low) / (high - low)
    codes = np.array([words.index(w) / (len(words) - 1) for w in table["word"].to_numpy()[rows]])
    return ages, codes


def built(name: str, config: Config, data: AudioData, train: np.ndarray) -> tuple[torch.nn.Module, torch.nn.Module]:
    stats = FoldStatistics.from_data(data, train)
    torch.manual_seed(0)
    spec = MODELS.get(name)
    return spec.build(config, data.num_outputs, stats).eval(), spec.featurizer(config, stats).eval()


# --- fold statistics --------------------------------------------------------------------------------------------
def test_statistics_age_range_and_word_table_from_training_rows(toy_data: AudioData) -> None:
    train = toy_data.splits.folds[1].train
    stats = FoldStatistics.from_data(toy_data, train)
    table = manifest(toy_data)
    assert (stats.age_min, stats.age_max) == pytest.approx((table["age"][train].min(), table["age"][train].max()))
    assert (stats.age_min, stats.age_max) != pytest.approx((table["age"].min(), table["age"].max()))  # not all rows
    assert stats.num_words == table["word"].nunique() == 3
    # The existing call (no ages) still works; it knows no age range then.
    old = FoldStatistics.from_rows(toy_data.targets, toy_data.word_ids, 2, 3, train)
    assert math.isnan(old.age_min) and np.array_equal(old.word_label_counts, stats.word_label_counts)


# --- rows -------------------------------------------------------------------------------------------------------
def test_rows_hold_the_hand_computed_age_and_word(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    fold = toy_data.splits.folds[0]
    config = toy_config_factory(**ROWS, **{"features.age_momentum": 0.5})
    _, featurizer = built("whisper", config, toy_data, fold.train)
    _, plain = built("whisper", toy_config_factory(**{"features.n_mels": 78}), toy_data, fold.train)
    rows = fold.valid[:6]
    batch = make_batch(toy_data, rows, CPU)
    features = featurizer(batch)
    assert features.shape[1] == 80  # 78 mels + age + word: Whisper's usual 80 rows
    torch.testing.assert_close(features[:, :78], plain(batch))
    ages, codes = hand_codes(toy_data, fold.train, batch.rows)
    frames = features.shape[-1]
    torch.testing.assert_close(features[:, 78], torch.tensor(0.5 * ages, dtype=torch.float32)[:, None].expand(-1,
                                                                                                           frames))
    torch.testing.assert_close(features[:, 79], torch.tensor(codes, dtype=torch.float32)[:, None].expand(-1, frames))
    assert len(set(codes)) > 1 and len(set(ages)) > 1


def test_rows_join_after_spec_augment(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """SpecAugment sees the 78 mel rows only: frequency masks never reach the age and word rows."""
    config = toy_config_factory(**ROWS, **{"augment.freq_mask": 78, "augment.freq_masks": 3})
    fold = toy_data.splits.folds[0]
    _, featurizer = built("whisper", config, toy_data, fold.train)
    seen: list[torch.Size] = []
    featurizer.augment.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].shape))
    batch = make_batch(toy_data, fold.train[:20], CPU)
    clean = featurizer.eval()(batch)
    torch.manual_seed(0)
    augmented = featurizer.train()(batch)
    assert seen[-1][1] == 78
    changed = augmented != clean
    assert torch.all(augmented[changed] == 0)
    assert changed[:, :78].any() and not changed[:, 78:].any()


def test_rows_widen_whisper_input(toy_config_factory: ConfigFactory, toy_data: AudioData) -> None:
    model, _ = built("whisper", toy_config_factory(**ROWS), toy_data, toy_data.splits.folds[0].train)
    assert model.encoder.config.num_mel_bins == 80 and model.encoder.conv1.in_channels == 80


@pytest.mark.parametrize("source", ["tiny (save_pretrained)", "whisper-tiny.en"])
def test_rows_with_pretrained_whisper(source: str, toy_config_factory: ConfigFactory, toy_data: AudioData,
                                      tiny_whisper: Path) -> None:
    """80 mels (the checkpoint's) + 2 rows as extra input channels; 78 mels do not fit, and the error says why."""
    fold = toy_data.splits.folds[0]
    folder = tiny_whisper if source.startswith("tiny") else real_weights(source)
    config = toy_config_factory(**{"features.conditioning": "rows", "model.pretrained": str(folder)})
    model, featurizer = built("whisper", config, toy_data, fold.train)
    assert model.encoder.conv1.in_channels == 82
    batch = make_batch(toy_data, fold.valid[:2], CPU)
    with torch.no_grad():
        assert torch.isfinite(forward_batch(model, featurizer, batch)["logits"]).all()
    wrong = toy_config_factory(**{**ROWS, "model.pretrained": str(folder)})
    with pytest.raises(ConfigError, match=r"features\.n_mels=78: .* trained with n_mels=80"):
        built("whisper", wrong, toy_data, fold.train)


def test_rows_on_resnet_make_the_last_two_image_rows(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    fold = toy_data.splits.folds[0]
    config = toy_config_factory(**{**RESNET, **ROWS, "features.n_mels": 222})
    _, featurizer = built("resnet50", config, toy_data, fold.train)
    batch = make_batch(toy_data, fold.valid[:3], CPU)
    image = featurizer(batch)
    ages, codes = hand_codes(toy_data, fold.train, batch.rows)
    assert image.shape == (3, 224, 224)
    torch.testing.assert_close(image[:, 222, 0], torch.tensor(ages, dtype=torch.float32))
    torch.testing.assert_close(image[:, 223, -1], torch.tensor(codes, dtype=torch.float32))
    with pytest.raises(ConfigError, match=r"features\.n_mels=224: .* use 222"):
        toy_config_factory(**{**RESNET, **ROWS, "features.n_mels": 224})


# --- embed ------------------------------------------------------------------------------------------------------
def with_covariates(batch: Batch, ages: torch.Tensor | None = None, words: torch.Tensor | None = None) -> Batch:
    return Batch(rows=batch.rows, waveforms=batch.waveforms, lengths=batch.lengths, targets=batch.targets,
                 word_ids=batch.word_ids if words is None else words, ages=batch.ages if ages is None else ages)


@pytest.mark.parametrize("name", ["whisper", "wav2vec2"])
def test_embed_output_moves_with_age_and_word_only(name: str, toy_data: AudioData,
                                                   toy_config_factory: ConfigFactory) -> None:
    fold = toy_data.splits.folds[0]
    config = toy_config_factory(**EMBED, **{"model.name": name, "model.size": "micro"})
    model, featurizer = built(name, config, toy_data, fold.train)
    none_model, none_featurizer = built(name, toy_config_factory(**{"model.name": name, "model.size": "micro"}),
                                        toy_data, fold.train)
    batch = make_batch(toy_data, fold.valid[:4], CPU)
    older = with_covariates(batch, ages=batch.ages + 1.5)
    other_word = with_covariates(batch, words=(batch.word_ids + 1) % 3)
    with torch.no_grad():
        base = forward_batch(model, featurizer, batch)["logits"]
        assert not torch.isclose(forward_batch(model, featurizer, older)["logits"], base).any()
        assert not torch.isclose(forward_batch(model, featurizer, other_word)["logits"], base).any()
        # Same audio, so only the covariates moved it; without conditioning, they move nothing.
        plain = forward_batch(none_model, none_featurizer, batch)["logits"]
        assert torch.equal(forward_batch(none_model, none_featurizer, older)["logits"], plain)
        assert torch.equal(forward_batch(none_model, none_featurizer, other_word)["logits"], plain)
    hidden = model.head.projection[0].in_features - 2 * 8
    assert hidden == none_model.head.projection[0].in_features  # pooled audio + age (8) + word (8)


def test_embed_sees_the_hand_normalised_age(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    fold = toy_data.splits.folds[2]
    model, featurizer = built("whisper", toy_config_factory(**EMBED), toy_data, fold.train)
    seen: list[torch.Tensor] = []
    model.head.covariates.age.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    batch = make_batch(toy_data, fold.valid[:5], CPU)
    with torch.no_grad():
        forward_batch(model, featurizer, batch)
    ages, _ = hand_codes(toy_data, fold.train, batch.rows)
    torch.testing.assert_close(seen[0][:, 0], torch.tensor(ages, dtype=torch.float32))


def test_film_starts_unmodulated_and_then_scales_by_word(toy_data: AudioData,
                                                        toy_config_factory: ConfigFactory) -> None:
    """film: zero-initialised, the head first sees the plain pooled audio (same width as without conditioning);
    once its weights move, another word scales and shifts the same audio features differently."""
    fold = toy_data.splits.folds[0]
    model, featurizer = built("whisper", toy_config_factory(**{"features.conditioning": "film",
                                                               "features.embed_dim": 8}), toy_data, fold.train)
    plain, _ = built("whisper", toy_config_factory(), toy_data, fold.train)
    assert model.head.projection[0].in_features == plain.head.projection[0].in_features
    received: list[torch.Tensor] = []
    model.head.projection.register_forward_pre_hook(lambda module, args: received.append(args[0]))
    batch = make_batch(toy_data, fold.valid[:4], CPU)
    other_word = with_covariates(batch, words=(batch.word_ids + 1) % 3)
    pooled: list[torch.Tensor] = []
    model.head.modulation.register_forward_pre_hook(lambda module, args: pooled.append(args[0]))
    with torch.no_grad():
        forward_batch(model, featurizer, batch)
        torch.testing.assert_close(received[0], pooled[0], rtol=0, atol=0)  # identity at initialisation
        torch.nn.init.normal_(model.head.modulation.film.weight, std=0.5)
        forward_batch(model, featurizer, batch)
        forward_batch(model, featurizer, other_word)
    torch.testing.assert_close(pooled[1], pooled[2])  # same audio
    assert not torch.isclose(received[1], received[2]).all(dim=-1).any()  # each clip's features moved with its word


# --- errors -----------------------------------------------------------------------------------------------------
def test_conditioning_needs_statistics_and_ages(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    rows, embed = toy_config_factory(**ROWS), toy_config_factory(**EMBED)
    with pytest.raises(ConfigError, match=r"features\.conditioning='rows' needs the fold statistics"):
        MODELS.get("whisper").featurizer(rows)
    with pytest.raises(ConfigError, match=r"features\.conditioning='embed' needs the fold statistics"):
        MODELS.get("whisper").build(embed, 2)
    no_ages = FoldStatistics.from_rows(toy_data.targets, toy_data.word_ids, 2, 3, toy_data.splits.folds[0].train,
                                       ages=np.full(len(toy_data.targets), np.nan, np.float32))
    with pytest.raises(DataError, match=r"features\.conditioning='embed' needs the clips' ages"):
        MODELS.get("whisper").build(embed, 2, no_ages)


def test_conditioning_config_errors(toy_config_factory: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"features\.conditioning='bogus': unknown conditioning mode"):
        toy_config_factory(**{"features.conditioning": "bogus"})
    with pytest.raises(ConfigError, match=r"features\.conditioning='embed' gives the model the age column"):
        toy_config_factory(**EMBED, **{"data.target": "age", "model.head": "regressor", "loss.name": "mse",
                                       "train.metric": "mae"})
    with pytest.raises(ConfigError, match=r"features\.embed_dim=0"):
        toy_config_factory(**{**EMBED, "features.embed_dim": 0})


# --- every model trains with conditioning; checkpoints keep it ---------------------------------------------------
@pytest.mark.parametrize(("name", "mode"), [
    ("whisper", ROWS), ("whisper", EMBED), ("wav2vec2", EMBED),
    ("resnet50", {**ROWS, "features.n_mels": 222}), ("resnet50", {**EMBED, "features.n_mels": 224}),
], ids=["whisper-rows", "whisper-embed", "wav2vec2-embed", "resnet50-rows", "resnet50-embed"])
def test_one_epoch_with_conditioning(name: str, mode: dict[str, object], toy_data: AudioData,
                                     toy_config_factory: ConfigFactory) -> None:
    extra = RESNET if name == "resnet50" else {"model.name": name, "model.size": "micro"}
    config = toy_config_factory(**extra, **mode, **{"train.epochs": 1})
    size = (4, 2) if name == "resnet50" else (12, 6)
    whole = toy_data.splits.folds[0]
    fold = Fold(index=0, train=whole.train[:size[0]], valid=whole.valid[:size[1]])
    (result,) = list(train_fold(config, toy_data, fold))
    assert math.isfinite(result.train_loss) and set(result.metrics) >= {"uar"}
    if mode["features.conditioning"] == "embed":  # gradients reached the age and word embeddings
        names = [n for n, p in result.model.named_parameters() if p.requires_grad]  # the optimiser's order
        moments = result.state["optimizer"]["state"]
        for key in ("head.covariates.age.weight", "head.covariates.word.weight"):
            assert moments[names.index(key)]["exp_avg"].abs().sum() > 0, key


def test_saved_model_keeps_its_conditioning(tmp_path: Path, toy_data: AudioData,
                                            toy_config_factory: ConfigFactory) -> None:
    """tune.final: a model trained with embeddings reloads from its model folder (which keeps the statistics of
    its training rows) to the same predictions; its age range travels in the state dict."""
    config = toy_config_factory(**EMBED, **{"train.epochs": 1})
    model, featurizer = train_final(config, toy_data)
    stats = FoldStatistics.from_data(toy_data, toy_data.splits.development)
    save_model_folder(tmp_path / "model", model, featurizer, config, stats, {})
    state = model.state_dict()
    development = manifest(toy_data)["age"].to_numpy()[toy_data.splits.development]
    assert state["head.covariates.codes.age_min"].item() == pytest.approx(development.min())
    reloaded = load_model_folder(tmp_path / "model", device="cpu")
    loaded, loaded_featurizer = reloaded.model, reloaded.featurizer
    assert reloaded.stats.age_min == pytest.approx(development.min())
    batch = make_batch(toy_data, toy_data.splits.test, CPU)
    with torch.no_grad():
        torch.testing.assert_close(forward_batch(loaded.eval(), loaded_featurizer.eval(), batch)["logits"],
                                   forward_batch(model.eval(), featurizer.eval(), batch)["logits"])
