"""Loading a run config: strict YAML (duplicate keys are errors), `--set a.b=c` overrides, validation
errors that name the field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from star1.config.base import ConfigError
from star1.config.root import Star1Config


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key '{key}' at line {key_node.start_mark.line + 1}")
        seen[key] = loader.construct_object(value_node, deep=deep)
    return seen


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file strictly (duplicate keys are errors, with the file and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e


def apply_override(data: dict, assignment: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as a YAML scalar/list/map."""
    if "=" not in assignment:
        raise ConfigError(f"override '{assignment}' must look like key.path=value")
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override '{assignment}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{assignment}': value is not valid YAML: {e}") from e
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, parts[: i + 1])
            continue
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict | list):
            raise ConfigError(f"override '{assignment}': '{'.'.join(parts[: i + 1])}' is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, parts)] = value
    else:
        node[last] = value


def _list_index(node: list, part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(
            f"override path '{'.'.join(path)}': '{part}' is not an index of a {len(node)}-item list"
        )
    return int(part)


def _list_item(node: list, part: str, path: list[str]) -> Any:
    return node[_list_index(node, part, path)]


_TYPE_TAGS = {"str", "SourceSpec", "FileLoader", "HFLoader", "file", "hf"}


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config ({origin}):"]
    errors = err.errors()
    # A source given as a mapping also fails the "name of a registry source" (str) branch: not useful.
    real = [e for e in errors if not (e["type"] == "string_type" and isinstance(e.get("input"), dict))]
    for e in real or errors:
        parts = [str(p) for p in e["loc"] if str(p) not in _TYPE_TAGS and "[" not in str(p)]
        loc = ".".join(parts) or "<root>"
        got = e.get("input")
        got_s = "" if isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  {loc}: {e['msg']}{got_s}")
    return "\n".join(lines)


def parse_config(
    data: dict | None, origin: str = "<dict>", base_dir: str | Path | None = None
) -> Star1Config:
    """Validate a config mapping; raise ConfigError naming each bad field path."""
    data = dict(data or {})
    if base_dir is not None and "base_dir" not in data:
        data["base_dir"] = str(base_dir)
    try:
        return Star1Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, origin)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Star1Config:
    """Load a YAML config (or the defaults), apply `--set` overrides, validate."""
    data: dict = {}
    base_dir: Path | None = None
    origin = "defaults"
    if path is not None:
        loaded = load_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded or {}
        base_dir = Path(path).resolve().parent
        origin = str(path)
    for assignment in overrides or []:
        apply_override(data, assignment)
    return parse_config(data, origin=origin, base_dir=base_dir)
