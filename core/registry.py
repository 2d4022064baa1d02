"""Registries by name: a new model, loss, optimiser or space is one decorated function, not another if-branch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> entry table that reports unknown names with the list of known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._entries[name]

    def check(self, key: str, name: str) -> None:
        if name not in self._entries:
            raise ConfigError(f"{key}={name!r}: unknown {self.kind}; choose one of: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# What a head predicts. Every registered loss and metric serves one task, and says which (core.checks matches
# them with `model.head`).
CLASSIFICATION = "classification"
REGRESSION = "regression"
