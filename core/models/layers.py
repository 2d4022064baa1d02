"""Which encoder layers the head hears (`model.layers`): `last`, one layer by `<index>`, `middle` (layer N // 2 of
N: the same choice for encoders of any depth, as a search space needs), or `weighted`, a learned softmax over all
of them (SUPERB's standard probe; initialised uniform).

A speech encoder's last layer is often not its most phonetic one, and articulation errors are phonetic. Layer 0 is
the input to the first transformer layer (the embeddings), layer N the encoder's output (`last_hidden_state`, so
`last` and `N` are the same layer, normalised where the encoder normalises its output).

Each selected layer is pooled over time first and the pooled vectors are mixed: for the mean pooling over all or
over the real frames this equals pooling the weighted sum of the frames (both are linear); for max pooling it is
the mix of each layer's max. Pooling first is what lets the frozen-encoder cache (core/models/frozen.py) store one
vector per layer and pooling and still give the full path's numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from core.errors import ConfigError

LAYER_CHOICES = ("last", "middle", "weighted")


def parse_layers(value: str) -> str | int:
    """`last`, `middle`, `weighted` or a layer index (int >= 0); ConfigError naming the field otherwise."""
    if value in LAYER_CHOICES:
        return value
    if value.strip().isdigit():
        return int(value)
    raise ConfigError(f"model.layers={value!r}: must be last, middle, weighted or a layer index (0: the "
                      "embeddings)")


def check_layer_index(value: str, layers: int, source: str) -> None:
    """A `<index>` must name one of the encoder's `layers` transformer layers (0..layers)."""
    choice = parse_layers(value)
    if isinstance(choice, int) and choice > layers:
        raise ConfigError(f"model.layers={choice}: {source} has layers 0..{layers} (0: the embeddings, "
                          f"{layers}: the last)")


class LayerMix(nn.Module):
    """[B, selected layers, d] pooled outputs -> [B, d]. `weighted` holds the trained softmax logits
    (`layer_weights`, zeros: uniform); `last`, `middle` and an index select one layer and hold no parameters."""

    def __init__(self, choice: str, layers: int) -> None:
        super().__init__()
        self.choice = parse_layers(choice)
        self.count = layers + 1  # the embeddings and every transformer layer
        if self.choice == "weighted":
            self.layer_weights = nn.Parameter(torch.zeros(self.count))

    def indices(self) -> list[int]:
        """The layers (0..N) this mix reads."""
        if self.choice == "weighted":
            return list(range(self.count))
        named = {"last": self.count - 1, "middle": (self.count - 1) // 2}
        return [named[self.choice] if self.choice in named else int(self.choice)]

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.choice != "weighted":
            return pooled[:, 0]
        weights = torch.softmax(self.layer_weights, dim=0).to(pooled.dtype)
        return (pooled * weights[None, :, None]).sum(dim=1)

    def weights(self) -> list[float] | None:
        """The learned softmax weights over layers 0..N (`weighted` only)."""
        if self.choice != "weighted":
            return None
        return torch.softmax(self.layer_weights.detach().float().cpu(), dim=0).tolist()


def learned_layer_weights(model: nn.Module) -> list[float] | None:
    """A trained model's softmax weights over its encoder layers 0..N (`model.layers=weighted`), else None."""
    mix = getattr(model, "mix", None)
    return mix.weights() if isinstance(mix, LayerMix) else None


def layer_states(output: object) -> tuple[torch.Tensor, ...]:
    """Layers 0..N of a Hugging Face encoder output run with `output_hidden_states=True`, the last being
    `last_hidden_state` (Wav2Vec2's stable-layer-norm variant normalises it after recording the last hidden state)."""
    return (*output.hidden_states[:-1], output.last_hidden_state)  # type: ignore[attr-defined]
