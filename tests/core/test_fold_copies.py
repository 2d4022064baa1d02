"""`train_fold` keeps each parameter-sized copy once, on the CPU: the resume state is a CPU snapshot, the best
epoch's weights are that snapshot (never copied a second time, never nested twice in a state), and the selected
model is built only when a caller reads it."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import torch

from core.config import Config
from core.data.dataset import AudioData
from core.train import EpochResult, train_fold

ConfigFactory = Callable[..., Config]


def tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors(item)


def saved_bytes(state: dict[str, Any]) -> int:
    """Size of the checkpoint file the trial writes for this state (torch.save stores a shared storage once)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def weight_bytes(result: EpochResult) -> int:
    return sum(v.numel() * v.element_size() for v in result.state["model"].values())


def test_the_state_lives_on_the_cpu(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    results = list(train_fold(toy_config_factory(**{"train.epochs": 2, "train.select": "best", "train.device": "auto"}),
                              toy_data, toy_data.splits.folds[0]))
    for result in results:
        assert {t.device.type for t in tensors(result.state)} == {"cpu"}
        assert result.state["progress"]["best_model"] is not None


def test_best_weights_are_the_states_snapshot_not_a_second_copy(toy_data: AudioData,
                                                                 toy_config_factory: ConfigFactory) -> None:
    """At an improving epoch the best copy is the state's own model snapshot (same storage); at a lagging epoch it
    is the improving epoch's snapshot, kept as it was, not copied again. So a select=best checkpoint is no larger
    than a select=last one at an improving epoch, and holds exactly one extra copy of the weights at a lagging one."""
    best_config = toy_config_factory(**{"train.epochs": 8, "train.select": "best", "optim.lr": 3e-3})
    fold = toy_data.splits.folds[0]
    best = list(train_fold(best_config, toy_data, fold))
    last = list(train_fold(best_config.with_overrides({"train.select": "last"}), toy_data, fold))
    lagging = [r for r in best if r.best_epoch != r.epoch]
    assert lagging, "the test needs an epoch that did not improve"
    for result in best:
        kept = result.state["progress"]["best_model"]
        snapshot = best[result.best_epoch - 1].state["model"]
        assert kept.keys() == snapshot.keys()
        assert all(kept[k].untyped_storage().data_ptr() == snapshot[k].untyped_storage().data_ptr() for k in kept)
    size = weight_bytes(best[0])
    improving = best[0]  # epoch 1 always improves on "nothing yet"
    assert improving.best_epoch == 1
    assert saved_bytes(improving.state) - saved_bytes(last[0].state) < 0.05 * size
    extra = saved_bytes(lagging[0].state) - saved_bytes(last[lagging[0].epoch - 1].state)
    assert 0.95 * size < extra < 1.05 * size


def test_the_state_is_a_snapshot_of_the_live_weights(toy_data: AudioData, toy_config_factory: ConfigFactory) -> None:
    """The snapshot shares nothing with the live model (select=last: `model` is the live one): training on after it
    was yielded leaves it unchanged."""
    run = train_fold(toy_config_factory(**{"train.epochs": 3, "train.select": "last"}), toy_data,
                     toy_data.splits.folds[0])
    first = next(run)
    frozen = {k: v.clone() for k, v in first.state["model"].items()}
    live = {p.untyped_storage().data_ptr() for p in first.model.parameters()}
    assert not live & {t.untyped_storage().data_ptr() for t in tensors(first.state)}
    second = next(run)
    assert all(torch.equal(first.state["model"][k], frozen[k]) for k in frozen)
    assert not all(torch.equal(second.state["model"][k], frozen[k]) for k in frozen)  # training did go on
