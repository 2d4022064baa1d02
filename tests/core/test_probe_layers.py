"""`model.layers`: every encoder layer in the probe cache; a weighted sum (softmax, uniform at first) or one layer, in
the cached and the full path, for Whisper and Wav2Vec2 (small save_pretrained checkpoints)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checks import check_config, check_run
from core.config import Config
from core.data.batches import make_batch
from core.data.dataset import AudioData, prepare_data
from core.errors import ConfigError
from core.models import MODELS, forward_batch, frozen
from core.models.layers import learned_layer_weights
from core.models.whisper import POOLINGS
from core.plots import final_plots
from core.train import train_fold


@pytest.fixture
def probe_config(toy_config_factory: Callable[..., Config], tiny_whisper: Path, tmp_path: Path
                 ) -> Callable[..., Config]:
    def make(**overrides: object) -> Config:
        return toy_config_factory(**{"model.pretrained": str(tiny_whisper), "model.freeze_encoder": True,
                                     "data.cache_dir": str(tmp_path / "cache"), **overrides})
    return make


def one_hot_logits(layers: int, index: int) -> torch.Tensor:
    """Softmax logits whose softmax is exactly one-hot in float32 (exp(-1e4) underflows to 0)."""
    logits = torch.full((layers,), -1e4)
    logits[index] = 0.0
    return logits


def outputs(config: Config, data: AudioData, state: dict[str, torch.Tensor] | None = None,
            one_hot: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    spec = MODELS.get(config.model.name)
    torch.manual_seed(0)
    model, featurizer = spec.build(config, data.num_outputs).eval(), spec.featurizer(config).eval()
    if state is not None:
        model.load_state_dict(state, strict=False)  # the head's weights; a weighted model adds mix.layer_weights
    if one_hot is not None:
        with torch.no_grad():
            model.mix.layer_weights.copy_(one_hot_logits(model.mix.count, one_hot))
    batch = make_batch(data, np.arange(8), torch.device("cpu"))
    with torch.no_grad():
        return forward_batch(model, featurizer, batch)["logits"], model.state_dict()


@pytest.mark.parametrize("name", ["whisper", "wav2vec2"])
def test_weighted_with_one_hot_weights_is_that_layer(toy_config_factory: Callable[..., Config], tiny_whisper: Path,
                                                     tiny_wav2vec2: Path, name: str) -> None:
    source = tiny_whisper if name == "whisper" else tiny_wav2vec2
    base = toy_config_factory(**{"model.name": name, "model.pretrained": str(source)})
    data = prepare_data(base)
    for index in (0, 1, 2):
        single, state = outputs(base.with_overrides({"model.layers": str(index)}), data)
        weighted, _ = outputs(base.with_overrides({"model.layers": "weighted"}), data, state, one_hot=index)
        torch.testing.assert_close(weighted, single, atol=1e-5, rtol=0)
    last, state = outputs(base, data)
    top, _ = outputs(base.with_overrides({"model.layers": "2"}), data, state)
    torch.testing.assert_close(top, last, atol=0, rtol=0)  # layer N is the encoder's output: `last`
    first, _ = outputs(base.with_overrides({"model.layers": "0"}), data, state)
    assert (first - last).abs().max() > 1e-3  # and the layers really differ
    middle, _ = outputs(base.with_overrides({"model.layers": "middle"}), data, state)
    one, _ = outputs(base.with_overrides({"model.layers": "1"}), data, state)
    torch.testing.assert_close(middle, one, atol=0, rtol=0)  # layer N // 2 of N = 2


def test_weighted_starts_uniform_and_learns(probe_config: Callable[..., Config]) -> None:
    config = probe_config(**{"model.layers": "weighted", "optim.lr": 5e-2, "train.select": "last"})
    model = MODELS.get("whisper").build(config, 2)
    assert model.mix.weights() == pytest.approx([1 / 3] * 3)
    data = prepare_data(config)
    results = list(train_fold(config, data, data.splits.folds[0]))
    learned = torch.softmax(results[-1].state["model"]["mix.layer_weights"], dim=0)
    assert learned.sum().item() == pytest.approx(1.0)
    assert (learned - 1 / 3).abs().max() > 1e-3  # trained with the head
    assert results[-1].model.mix.weights() == pytest.approx(learned.tolist(), abs=1e-6)


@pytest.mark.parametrize("layers", ["weighted", "1", "last"])
def test_cached_path_equals_full_path(probe_config: Callable[..., Config], layers: str) -> None:
    config = probe_config(**{"model.layers": layers, "model.pooling": "max", "model.dropout": 0.2})
    data = prepare_data(config)
    full = list(train_fold(config.with_overrides({"model.encoder_cache": False}), data, data.splits.folds[0]))
    before = frozen.encoded_clips
    cached = list(train_fold(config, data, data.splits.folds[0]))
    assert frozen.encoded_clips - before in (0, len(data.targets))  # one file for every layer choice
    for a, b in zip(full, cached, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, abs=1e-5)
        np.testing.assert_allclose(b.outputs, a.outputs, atol=1e-5)
    head_keys = {k for k in full[-1].state["model"] if k.startswith(("head.", "mix."))}
    assert set(cached[-1].state["model"]) == head_keys
    assert ("mix.layer_weights" in head_keys) == (layers == "weighted")


def test_the_cache_holds_every_layer(probe_config: Callable[..., Config], tmp_path: Path) -> None:
    config = probe_config(**{"train.epochs": 1})
    data = prepare_data(config)
    list(train_fold(config, data, data.splits.folds[0]))
    (file,) = (tmp_path / "cache").glob("encoded-*.npy")
    cache = np.load(file, mmap_mode="r")
    assert cache.shape == (len(data.targets), 3, len(POOLINGS.names()), 64)  # clips x layers 0..2 x poolings x d
    assert cache.dtype == np.float32
    assert frozen.encoded_dtype(7 * 3 * 512 * 10_000) == np.float32  # whisper-base, 10,000 clips: 0.4 GB
    assert frozen.encoded_dtype(33 * 3 * 1280 * 10_000) == np.float16  # whisper-large: past the budget, half the bytes


@pytest.mark.parametrize(("overrides", "field"), [
    ({"model.layers": "top"}, "model.layers"),
    ({"model.layers": "-1"}, "model.layers"),
    ({"model.layers": "weighted", "model.name": "resnet50"}, "model.layers"),
])
def test_bad_layer_choices_name_the_field(toy_config: Config, overrides: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}="):
        check_config(toy_config.with_overrides(overrides))


def test_an_index_past_the_last_layer_is_refused_before_training(toy_config: Config, toy_data: AudioData,
                                                                  tiny_whisper: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model.layers=3: the micro preset has layers 0..2"):
        check_config(toy_config.with_overrides({"model.layers": "3"}))
    with pytest.raises(ConfigError, match=r"^model.layers=5: the pretrained Whisper .* has layers 0..2"):
        check_run(toy_config.with_overrides({"model.layers": "5", "model.pretrained": str(tiny_whisper)}), toy_data)


def test_the_final_report_draws_the_learned_layer_weights(probe_config: Callable[..., Config]) -> None:
    config = probe_config(**{"model.layers": "weighted", "optim.lr": 5e-2, "train.epochs": 2})
    data = prepare_data(config)
    model = list(train_fold(config, data, data.splits.folds[0]))[-1].model
    weights = learned_layer_weights(model)
    assert weights is not None and len(weights) == 3 and sum(weights) == pytest.approx(1.0)
    assert learned_layer_weights(MODELS.get("whisper").build(probe_config(), 2)) is None  # `last`: nothing learned
    report = {"metrics": {"mae": 1.0}, "layer_weights": weights}  # a regressor's report: the smallest one
    plots = final_plots(report, np.zeros(4), np.zeros((4, 1)))
    assert plots["layer_weights.png"].startswith(b"\x89PNG")
    assert "layer_weights.png" not in final_plots({"metrics": {"mae": 1.0}}, np.zeros(4), np.zeros((4, 1)))
