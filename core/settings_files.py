"""Reading a settings file a user gives (a config, a best_config.json, a run.json, a YAML of tune.run flags):
bounded before it is expanded, strict about what silently loses data, and short in what it says.

- Size is capped before parsing, and nesting depth before building any value (JSON: a scan of its brackets;
  YAML: its parse events, which do not recurse), so a file nested 100,000 deep is one line, not a RecursionError.
- YAML aliases are counted as they would expand (a "billion laughs" of nested anchors is refused in
  milliseconds, before any value is built).
- A key given twice in one mapping (two `set:` blocks) is refused naming the key and both lines: JSON and YAML
  parsers otherwise keep the last one silently.
- UTF-8 with or without a byte-order mark (Windows editors write one).
- A value is shown in a message as a short excerpt (`excerpt`), never as the repr of the whole value.
"""

from __future__ import annotations

import codecs
import json
import re
import reprlib
from pathlib import Path
from typing import Any

from core.errors import ConfigError

MAX_BYTES = 5_000_000  # a config, run.json or best_config.json is a few kB; a search's evidence well under 1 MB
MAX_DEPTH = 50  # settings are at most a few levels deep (section / key / list)
MAX_VALUES = 200_000  # values after YAML aliases are expanded
EXCERPT = 60

_SHORT = reprlib.Repr()  # (keyword arguments need Python 3.12)
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 2, 4, 4, 4, 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = EXCERPT
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """A short repr of `value`: bounded in depth and width before it is built (reprlib), then cut to `limit`."""
    # containers through reprlib (bounded before the text is built: an alias can make one enormous); a scalar
    # is at most the file's size, so its plain repr is cut instead
    shown = _SHORT.repr(value) if isinstance(value, (dict, list, tuple, set, frozenset)) else repr(value)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def decode(file: Path | str, data: bytes, kind: str = "JSON") -> str:
    """UTF-8 text (a leading byte-order mark dropped), or a ConfigError naming the file."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{file}: {len(data):,} bytes; a config file is at most {MAX_BYTES:,}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data:
        raise ConfigError(f"{file}: config file is not UTF-8 text (UTF-16, or binary); save it as UTF-8 {kind}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{file}: config file is not UTF-8 (byte 0x{data[error.start]:02x} at offset "
                          f"{error.start}); save it as UTF-8 {kind}") from None


def read_text(file: Path | str, kind: str = "JSON") -> str:
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"{path}: " + ("not a file" if path.exists() else "config file not found"))
    if path.stat().st_size > MAX_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a config file is at most {MAX_BYTES:,}")
    return decode(path, path.read_bytes(), kind)


def parse_json(file: Path | str, text: str) -> Any:
    """JSON with its depth checked first and duplicate keys refused."""
    depth = deepest = 0
    for char in _JSON_STRING.sub('""', text):  # brackets inside strings do not nest
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                raise ConfigError(f"{file}: not a config (JSON nested too deeply); at most {MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ConfigError(f"{file}: key {excerpt(key)} given twice in one object; give each key once "
                                  "(JSON keeps only the last, silently)")
            seen[key] = value
        return seen

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{file}: not valid JSON ({error})") from None
    except RecursionError:  # the scan above makes this unreachable, short of a changed json module
        raise ConfigError(f"{file}: not a config (JSON nested too deeply)") from None


def parse_yaml(file: Path | str, text: str) -> Any:
    """YAML (safe loader) with its depth and expanded size checked before any value is built, and duplicate keys
    refused."""
    import yaml  # only a YAML settings file needs it

    try:
        _check_yaml_shape(file, text, yaml)
        return yaml.load(text, Loader=_unique_key_loader(file, yaml))  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML ({excerpt(' '.join(str(error).split()), 200)})") from None


def _check_yaml_shape(file: Path | str, text: str, yaml: Any) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events: flat, no recursion, no aliases expanded
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{file}: not a config (YAML nested too deeply); at most {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    root = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes; an alias is the anchored node again
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:  # as expanded; depth is bounded above, so this recursion is too
        if id(node) not in sizes:
            children = (node.value if isinstance(node, yaml.SequenceNode) else
                        [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
            sizes[id(node)] = 1 + sum(size(child) for child in children)
            if sizes[id(node)] > MAX_VALUES:
                raise ConfigError(f"{file}: its aliases expand to more than {MAX_VALUES:,} values (nested "
                                  "anchors); not a config")
        return sizes[id(node)]

    if root is not None:
        size(root)


def _unique_key_loader(file: Path | str, yaml: Any) -> type:
    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *base` merges may repeat keys on purpose
                key = self.construct_scalar(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(f"{file}: line {line}: key {excerpt(key)} given twice (first at line "
                                      f"{seen[key]}); give each key once (YAML keeps only the last, silently)")
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_settings(file: Path | str) -> Any:
    """A settings file's value: YAML unless its suffix is .json."""
    json_file = Path(file).suffix.lower() == ".json"
    text = read_text(file, "JSON" if json_file else "YAML")
    return parse_json(file, text) if json_file else parse_yaml(file, text)
