"""Wav2Vec2 and ResNet50 next to Whisper: inputs, pooling, freezing, pretrained loading, config checks, and one
epoch of `train_fold` for every model with both heads."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
import torchvision
from support.toy_audio import make_toy_config
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from core.config import Config
from core.data.batches import Batch, make_batch
from core.data.dataset import AudioData, prepare_data
from core.data.splits import Fold
from core.errors import ConfigError
from core.evaluate import predict
from core.features import WaveformNormalizer, WhisperLogMel
from core.models import MODELS, forward_batch
from core.models.conditioning import conditioned_head
from core.models.wav2vec2 import SIZE_PRESETS, Wav2Vec2Classifier
from core.statistics import FoldStatistics
from core.train import train_fold

ConfigFactory = Callable[..., Config]
CPU = torch.device("cpu")
MODEL_SETTINGS: dict[str, dict[str, object]] = {
    "whisper": {"model.name": "whisper", "model.size": "micro"},
    "wav2vec2": {"model.name": "wav2vec2", "model.size": "micro"},
    "resnet50": {"model.name": "resnet50", "features.n_mels": 224, "features.n_fft": 1024, "train.batch_size": 2,
                 "train.eval_batch_size": 4},
}
REGRESSOR = {"data.target": "age", "model.head": "regressor", "loss.name": "mse", "train.metric": "mae"}
RESNET = MODEL_SETTINGS["resnet50"]


@pytest.fixture(scope="module")
def age_data(toy_dataset: Path, toy_cache_dir: Path) -> AudioData:
    """The toy set with the numeric `age` column as a regression target."""
    return prepare_data(make_toy_config(toy_dataset, toy_cache_dir, **REGRESSOR))


def few(fold: Fold, train: int, valid: int) -> Fold:
    """A small slice of a fold: ResNet50 costs ~0.4 s a clip on these CPUs."""
    return Fold(index=fold.index, train=fold.train[:train], valid=fold.valid[:valid])


def hand_uar(targets: np.ndarray, predictions: np.ndarray) -> float:
    recalls = [sum(1 for t, p in zip(targets, predictions, strict=True) if t == c and p == c) /
               sum(1 for t in targets if t == c) for c in sorted(set(targets.tolist()))]
    return sum(recalls) / len(recalls)


# --- every model, both heads, one epoch of train_fold ---------------------------------------------------------
@pytest.mark.parametrize("head", ["classifier", "regressor"])
@pytest.mark.parametrize("model", list(MODEL_SETTINGS))
def test_one_epoch_of_train_fold(model: str, head: str, toy_data: AudioData, age_data: AudioData,
                                 toy_config_factory: ConfigFactory) -> None:
    overrides = {**MODEL_SETTINGS[model], **(REGRESSOR if head == "regressor" else {})}
    config = toy_config_factory(**overrides, **{"train.epochs": 1, "train.select": "last"})
    data = age_data if head == "regressor" else toy_data
    size = (6, 4) if model == "resnet50" else (12, 8)
    fold = few(data.splits.folds[0], *size)
    (result,) = list(train_fold(config, data, fold))
    assert result.epoch == 1 and math.isfinite(result.train_loss)
    # The optimiser took one step per batch (AdamW keeps a step count per trainable parameter).
    steps = {float(s["step"]) for s in result.state["optimizer"]["state"].values()}
    assert steps == {float(math.ceil(size[0] / config.train.batch_size))}
    # Validation metrics are the head's task's, and agree with metrics recomputed from the model's predictions.
    outputs = predict(result.model, result.featurizer, data, fold.valid, CPU, 4)
    targets = data.targets[fold.valid]
    if head == "regressor":
        assert outputs.shape == (size[1], 1)
        assert set(result.metrics) == {"mae", "rmse", "pearson"}
        errors = [abs(float(p) - float(t)) for p, t in zip(outputs[:, 0], targets, strict=True)]
        assert result.metrics["mae"] == pytest.approx(sum(errors) / len(errors), rel=1e-5)
        assert result.metrics["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / len(errors)), rel=1e-5)
    else:
        assert outputs.shape == (size[1], 2)
        assert set(result.metrics) >= {"uar", "f1", "accuracy", "auroc"}  # + bias metrics (tests/core/test_bias.py)
        assert result.metrics["uar"] == pytest.approx(hand_uar(targets, outputs.argmax(axis=1)))


# --- Wav2Vec2 -------------------------------------------------------------------------------------------------
def test_wav2vec2_presets() -> None:
    """`base` is wav2vec2-base's shape (transformers' defaults); `micro` is tiny and keeps the 320-sample frame."""
    reference = Wav2Vec2Config()
    for key, value in SIZE_PRESETS["base"].items():
        expected = getattr(reference, key)
        assert (list(value) == list(expected)) if isinstance(value, tuple) else value == expected, key
    micro = SIZE_PRESETS["micro"]
    assert micro["hidden_size"] == 32 and micro["num_hidden_layers"] == 2 and micro["num_attention_heads"] == 2
    assert math.prod(micro["conv_stride"]) == math.prod(reference.conv_stride) == 320


def test_waveform_normaliser_matches_the_feature_extractor(toy_data: AudioData) -> None:
    """Zero mean, unit variance over each clip's real samples, padding 0: transformers' extractor is the
    reference, fed the unpadded clips."""
    rows = np.arange(6)
    batch = make_batch(toy_data, rows, CPU)
    assert len(set(batch.lengths.tolist())) > 1  # clips of different real lengths
    ours = WaveformNormalizer()(batch).numpy()
    clips = [w[:n] for w, n in zip(batch.waveforms.numpy(), batch.lengths.tolist(), strict=True)]
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    reference = extractor(clips, sampling_rate=16000, padding="max_length", max_length=batch.waveforms.shape[1],
                          return_attention_mask=True, return_tensors="np")["input_values"]
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    for wave, n in zip(ours, batch.lengths.tolist(), strict=True):
        assert abs(wave[:n].mean()) < 1e-4 and abs(wave[:n].std() - 1) < 1e-3 and not wave[n:].any()


def conv_frames(samples: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    for kernel, stride in zip(kernels, strides, strict=True):
        samples = (samples - kernel) // stride + 1
    return samples


def test_wav2vec2_pools_only_real_frames(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """Pooled features = mean of the hidden states over the frames of the real samples, whose count is the number
    of frames the convolutions give for the unpadded clip."""
    config = toy_config_factory(**MODEL_SETTINGS["wav2vec2"])
    spec = MODELS.get("wav2vec2")
    torch.manual_seed(0)
    model, featurizer = spec.build(config, 2).eval(), spec.featurizer(config).eval()
    batch = make_batch(toy_data, np.arange(6), CPU)
    preset = SIZE_PRESETS["micro"]
    with torch.no_grad():
        features = featurizer(batch)
        hidden = model.backbone(features).last_hidden_state
        logits = model(features, batch)["logits"]
        for i, n in enumerate(batch.lengths.tolist()):
            real = conv_frames(n, preset["conv_kernel"], preset["conv_stride"])
            alone = model.backbone.feature_extractor(features[i:i + 1, :n])  # [1, channels, frames]
            assert alone.shape[-1] == real
            expected = model.head(hidden[i:i + 1, :real].mean(dim=1), batch)["logits"][0]
            torch.testing.assert_close(logits[i], expected)
            if real < hidden.shape[1]:  # padded clip: the padding's frames are left out
                everything = model.head(hidden[i:i + 1].mean(dim=1), batch)["logits"][0]
                assert not torch.allclose(logits[i], everything)
    assert (batch.lengths < features.shape[1]).any()


def test_layer_norm_wav2vec2_ignores_padding_completely() -> None:
    """A layer-norm Wav2Vec2 gets the attention mask: a clip padded with junk gives what the clip alone gives."""
    hf_config = Wav2Vec2Config(**SIZE_PRESETS["micro"], feat_extract_norm="layer", do_stable_layer_norm=True,
                               apply_spec_augment=False)
    torch.manual_seed(0)
    backbone = Wav2Vec2Model(hf_config)
    head = conditioned_head(Config().with_overrides({"model.projection_dim": 8}), None, 32, 2)
    model = Wav2Vec2Classifier(backbone, head, freeze_encoder=False, freeze_feature_encoder=True).eval()
    assert model.pass_attention_mask
    clip = torch.randn(1, 9000)
    padded = torch.cat([clip, 5 * torch.randn(1, 7000)], dim=1)

    def batch_of(waves: torch.Tensor) -> Batch:
        return Batch(rows=np.zeros(1, dtype=np.int64), waveforms=waves, lengths=torch.tensor([9000]),
                     targets=torch.zeros(1, dtype=torch.int64), word_ids=torch.zeros(1, dtype=torch.int64),
                     ages=torch.full((1,), math.nan))

    with torch.no_grad():
        alone = model(clip, batch_of(clip))["logits"]
        junk = model(padded, batch_of(padded))["logits"]
    torch.testing.assert_close(junk, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_feature_encoder(freeze: bool, toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """Frozen: an optimiser step changes the transformer and head but not the convolutional feature encoder."""
    config = toy_config_factory(**MODEL_SETTINGS["wav2vec2"], **{"model.freeze_feature_encoder": freeze})
    spec = MODELS.get("wav2vec2")
    torch.manual_seed(0)
    model, featurizer = spec.build(config, 2).train(), spec.featurizer(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    batch = make_batch(toy_data, np.arange(8), CPU)
    torch.nn.functional.cross_entropy(forward_batch(model, featurizer, batch)["logits"], batch.targets).backward()
    optimizer.step()
    after = model.state_dict()
    conv = [k for k in before if k.startswith("backbone.feature_extractor.") and k.endswith("weight")]
    rest = ("backbone.encoder.layers.0.attention.q_proj.weight", "head.projection.0.weight")
    assert conv and all(torch.equal(before[k], after[k]) == freeze for k in conv)
    assert all(not torch.equal(before[k], after[k]) for k in rest)


def test_wav2vec2_loads_pretrained_weights_exactly(tmp_path: Path, toy_config_factory: ConfigFactory) -> None:
    """`model.pretrained` = a local folder goes through `from_pretrained`; every tensor equals the saved one."""
    torch.manual_seed(3)
    saved = Wav2Vec2Model(Wav2Vec2Config(**SIZE_PRESETS["micro"]))
    saved.save_pretrained(tmp_path / "w2v")
    config = toy_config_factory(**{"model.name": "wav2vec2", "model.pretrained": str(tmp_path / "w2v")})
    torch.manual_seed(4)  # a different random init, so equality can only come from the file
    model = MODELS.get("wav2vec2").build(config, 2)
    reference, loaded = saved.state_dict(), model.backbone.state_dict()
    assert set(loaded) == set(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    assert model.backbone.config.apply_spec_augment is False  # no masking from numpy's global RNG


def test_wav2vec2_config_errors(toy_config_factory: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"features\.conditioning='rows'.*waveforms"):
        toy_config_factory(**MODEL_SETTINGS["wav2vec2"], **{"features.conditioning": "rows"})
    with pytest.raises(ConfigError, match=r"augment\.time_mask=10.*waveforms"):
        toy_config_factory(**MODEL_SETTINGS["wav2vec2"], **{"augment.time_mask": 10, "augment.time_masks": 1})
    with pytest.raises(ConfigError, match=r"model\.size='tiny'.*micro, base"):
        toy_config_factory(**{"model.name": "wav2vec2", "model.size": "tiny"})


# --- ResNet50 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [1.0, 1.37, 2.0])
def test_resnet_image_is_224_by_224_and_spans_the_clip(seconds: float, toy_config_factory: ConfigFactory) -> None:
    config = toy_config_factory(**RESNET, **{"data.max_seconds": seconds})
    samples = int(round(16000 * seconds))
    hop = samples // 224  # by hand: 1 + samples // hop >= 224 frames from a centred STFT
    waves = torch.randn(2, samples) * 0.1
    batch = Batch(rows=np.arange(2), waveforms=waves, lengths=torch.full((2,), samples),
                  targets=torch.zeros(2, dtype=torch.int64), word_ids=torch.zeros(2, dtype=torch.int64),
                  ages=torch.full((2,), math.nan))
    image = MODELS.get("resnet50").featurizer(config).eval()(batch)
    assert image.shape == (2, 224, 224)
    full = torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, hop_length=hop, n_mels=224, norm="slaney",
                                                mel_scale="slaney")(waves)
    assert 224 <= full.shape[-1] <= 226  # cropped, never padded: the image covers the clip to its end
    expected = WhisperLogMel(16000, 1024, hop, 224, full.shape[-1])(waves)[..., :224]
    torch.testing.assert_close(image, expected)


def test_resnet_pretrained_state_dict_sums_conv1_over_rgb(tmp_path: Path, toy_config_factory: ConfigFactory) -> None:
    """A grey image through the RGB network = the same image through ours: conv1 is the sum over colours, every
    other backbone tensor is the file's, the ImageNet fc is replaced by our head."""
    torch.manual_seed(5)
    rgb = torchvision.models.resnet50(weights=None).eval()
    torch.save(rgb.state_dict(), tmp_path / "resnet50.pth")
    config = toy_config_factory(**RESNET, **{"model.pretrained": str(tmp_path / "resnet50.pth")})
    model = MODELS.get("resnet50").build(config, 2).eval()
    state, reference = model.backbone.state_dict(), rgb.state_dict()
    torch.testing.assert_close(state["conv1.weight"], reference["conv1.weight"].sum(dim=1, keepdim=True))
    assert state["conv1.weight"].shape == (64, 1, 7, 7)
    assert set(state) == set(reference) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(state[k], reference[k]) for k in state if k != "conv1.weight")
    rgb.fc = torch.nn.Identity()
    grey = torch.randn(2, 1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(grey), rgb(grey.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)


def test_resnet_config_errors(tmp_path: Path, toy_config_factory: ConfigFactory) -> None:
    with pytest.raises(ConfigError, match=r"features\.n_mels=80: resnet50 takes a 224-row image"):
        toy_config_factory(**{**RESNET, "features.n_mels": 80})
    with pytest.raises(ConfigError, match=r"features\.n_fft=400: .* mel bands empty; use features\.n_fft=1024"):
        toy_config_factory(**{**RESNET, "features.n_fft": 400})
    with pytest.raises(ConfigError, match=r"model\.pretrained='microsoft/resnet-50'.*no hub ids"):
        toy_config_factory(**RESNET, **{"model.pretrained": "microsoft/resnet-50"})
    missing = toy_config_factory(**RESNET, **{"model.pretrained": str(tmp_path / "absent.pt")})
    with pytest.raises(ConfigError, match=r"model\.pretrained=.*absent\.pt.*not found"):
        MODELS.get("resnet50").build(missing, 2)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pt")
    wrong = toy_config_factory(**RESNET, **{"model.pretrained": str(tmp_path / "resnet18.pt")})
    with pytest.raises(ConfigError, match=r"model\.pretrained=.*resnet18\.pt.*does not fit"):
        MODELS.get("resnet50").build(wrong, 2)


def test_resnet_freeze_encoder(toy_config_factory: ConfigFactory) -> None:
    model = MODELS.get("resnet50").build(toy_config_factory(**RESNET, **{"model.freeze_encoder": True}), 2)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


@pytest.mark.parametrize("model", list(MODEL_SETTINGS))
def test_stats_are_optional_without_conditioning(model: str, toy_data: AudioData,
                                                 toy_config_factory: ConfigFactory) -> None:
    """Existing callers build without statistics; a classifier without conditioning is the same model with them."""
    stats = FoldStatistics.from_data(toy_data, toy_data.splits.folds[0].train)
    config = toy_config_factory(**MODEL_SETTINGS[model])
    states = []
    for args in ((), (stats,)):
        torch.manual_seed(0)
        states.append(MODELS.get(model).build(config, 2, *args).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
