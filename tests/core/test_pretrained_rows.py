"""Age/word rows on a pretrained Whisper (issue 21, item 1): the checkpoint keeps its own front end (80 bands, its
hop, its normalisation); the rows enter as two extra conv1 input channels whose weights start at zero, so at step 0
the model is exactly the pretrained one. From scratch the rows may still take two of the input rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from core.checks import check_config, check_run
from core.config import Config
from core.data.batches import make_batch
from core.data.dataset import AudioData
from core.errors import ConfigError
from core.models import MODELS
from core.statistics import FoldStatistics

ConfigFactory = Callable[..., Config]
CPU = torch.device("cpu")


def encoder_and_input(config: Config, data: AudioData) -> tuple[torch.nn.Module, torch.Tensor]:
    fold = data.splits.folds[0]
    stats = FoldStatistics.from_data(data, fold.train)
    spec = MODELS.get("whisper")
    torch.manual_seed(0)
    model = spec.build(config, data.num_outputs, stats).eval()
    featurizer = spec.featurizer(config, stats).eval()
    with torch.no_grad():
        return model, featurizer(make_batch(data, fold.valid[:4], CPU))


def test_rows_on_a_pretrained_whisper_start_as_the_pretrained_model(toy_config_factory: ConfigFactory,
                                                                     toy_data: AudioData,
                                                                     tiny_whisper: Path) -> None:
    pretrained = {"model.pretrained": str(tiny_whisper)}
    plain, plain_input = encoder_and_input(toy_config_factory(**pretrained), toy_data)
    rows_config = toy_config_factory(**pretrained, **{"features.conditioning": "rows"})
    rows, rows_input = encoder_and_input(rows_config, toy_data)
    assert rows_config.features.n_mels == 80 and rows_input.shape[1] == 82  # 80 bands of the checkpoint + 2 rows
    torch.testing.assert_close(rows_input[:, :80], plain_input, rtol=0, atol=0)  # the same bands, unshifted
    assert rows.encoder.conv1.in_channels == 82
    assert torch.all(rows.encoder.conv1.weight[:, 80:] == 0)
    torch.testing.assert_close(rows.encoder.conv1.weight[:, :80], plain.encoder.conv1.weight, rtol=0, atol=0)
    with torch.no_grad():
        plain_hidden = plain.encoder(input_features=plain_input).last_hidden_state
        rows_hidden = rows.encoder(input_features=rows_input).last_hidden_state
    assert rows_input[:, 80:].abs().sum() > 0  # the rows do carry values: zero weights are what makes them silent
    torch.testing.assert_close(rows_hidden, plain_hidden, rtol=0, atol=1e-6)
    check_run(rows_config, toy_data)  # the checkpoint's own front end: accepted


def test_a_pretrained_whisper_refuses_another_number_of_bands(toy_config_factory: ConfigFactory,
                                                               toy_data: AudioData, tiny_whisper: Path) -> None:
    """78 bands (the old rows recipe) shift every band the checkpoint learned: refused, naming its feature_size."""
    for extra in ({}, {"features.conditioning": "rows"}):
        config = toy_config_factory(**{"model.pretrained": str(tiny_whisper), "features.n_mels": 78, **extra})
        with pytest.raises(ConfigError, match=r"^features\.n_mels=78: .*trained with n_mels=80"):
            check_run(config, toy_data)


def test_rows_from_scratch_keep_the_78_plus_2_layout(toy_config_factory: ConfigFactory, toy_data: AudioData) -> None:
    config = check_config(toy_config_factory(**{"features.conditioning": "rows", "features.n_mels": 78}))
    model, features = encoder_and_input(config, toy_data)
    assert features.shape[1] == 80 and model.encoder.conv1.in_channels == 80
