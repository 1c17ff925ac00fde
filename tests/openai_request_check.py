"""Checks a Chat Completions request body against the official `openai` SDK's request types.

A hand walk over the SDK's TypedDict annotations rather than pydantic: the SDK types its
lists as `Iterable[...]`, which pydantic validates lazily, and TypedDicts cannot be given
`extra="forbid"` from outside. Structural problems (unknown or missing fields, wrong types,
bad roles) come first, then the tool-call pairing OpenAI enforces: an assistant message's
tool calls are answered by `tool` messages that follow it directly, one per call.
"""

from __future__ import annotations

import collections.abc
import re
import types
import typing
from collections.abc import Collection
from typing import Any, Literal, Union

import typing_extensions
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_WRAPPERS = (typing.Required, typing.NotRequired, typing.Annotated)
_SEQUENCES = (list, collections.abc.Iterable, collections.abc.Sequence)
_INDEX = re.compile(r"\[\d+\]")


def problems(body: dict[str, Any], *, allow_extra: Collection[str] = ()) -> list[str]:
    """Everything an OpenAI endpoint would reject in `body`; empty when it is valid.

    `allow_extra` names vendor fields to accept, as index-free paths such as
    `"messages.reasoning_content"` (DeepSeek's echo of earlier reasoning).
    """
    streaming = body.get("stream")
    params = CompletionCreateParamsStreaming if streaming else CompletionCreateParamsNonStreaming
    found = _Walker(frozenset(allow_extra)).check(body, params, "")
    messages = body.get("messages")
    if isinstance(messages, list):
        found += _tool_pairing(messages)
    return found


class _Walker:
    def __init__(self, allow_extra: frozenset[str]) -> None:
        self.allow_extra = allow_extra

    def check(self, value: Any, tp: Any, path: str) -> list[str]:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if tp is object or tp is Any:
            return []
        if origin in (Union, types.UnionType):
            return self._union(value, typing.get_args(tp), path)
        if origin is Literal:
            ok = value in typing.get_args(tp)
            return [] if ok else [f"{path}: {value!r} is not one of {typing.get_args(tp)}"]
        if typing_extensions.is_typeddict(tp):
            return self._typeddict(value, tp, path)
        if origin is dict or tp is dict:
            return self._mapping(value, tp, path)
        if origin in _SEQUENCES or _is_sequence_protocol(origin):
            return self._sequence(value, tp, path)
        return _scalar(value, tp, path)

    def _typeddict(self, value: Any, td: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path or 'body'}: expected an object, got {type(value).__name__}"]
        hints = typing.get_type_hints(td, include_extras=True)
        found = []
        for key in value:
            if key not in hints and _schema_path(path, key) not in self.allow_extra:
                found.append(f"{_join(path, key)}: unknown field")
        for key, hint in hints.items():
            if key in value:
                found += self.check(value[key], hint, _join(path, key))
            elif _is_required(td, key, hint):
                found.append(f"{_join(path, key)}: required field missing")
        return found

    def _union(self, value: Any, options: tuple[Any, ...], path: str) -> list[str]:
        if value is None and type(None) in options:
            return []
        options = _matching_variants(value, [o for o in options if o is not type(None)])
        if not options:
            return [f"{path}: {value!r} matches no variant"]
        best: list[str] | None = None
        for option in options:
            found = self.check(value, option, path)
            if not found:
                return []
            if best is None or len(found) < len(best):
                best = found
        return best or []

    def _mapping(self, value: Any, tp: Any, path: str) -> list[str]:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        args = typing.get_args(tp)
        if not args:
            return []
        return [p for k, v in value.items() for p in self.check(v, args[1], f"{path}.{k}")]

    def _sequence(self, value: Any, tp: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        (item,) = typing.get_args(tp) or (Any,)
        return [p for i, v in enumerate(value) for p in self.check(v, item, f"{path}[{i}]")]


def _tool_pairing(messages: list[Any]) -> list[str]:
    """Tool messages must answer the tool calls of the assistant message right before them."""
    found: list[str] = []
    open_calls: set[str] = set()
    owner: int | None = None
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            found.append(f"messages[{i}].role: {role!r} is not a valid role")
            continue
        if role == "tool":
            call_id = message.get("tool_call_id")
            if owner is None or call_id not in open_calls:
                found.append(
                    f"messages[{i}]: tool_call_id {call_id!r} answers no tool call of the"
                    " assistant message directly before it"
                )
            open_calls.discard(call_id)
            continue
        found += _unanswered(open_calls, owner)
        owner, open_calls = None, set()
        if role == "assistant" and message.get("tool_calls"):
            owner = i
            open_calls = {c.get("id") for c in message["tool_calls"] if isinstance(c, dict)}
    return found + _unanswered(open_calls, owner)


def _unanswered(open_calls: set[str], owner: int | None) -> list[str]:
    return [
        f"messages[{owner}].tool_calls: {call_id!r} has no tool message answering it"
        for call_id in sorted(open_calls, key=str)
    ]


def _matching_variants(value: Any, options: list[Any]) -> list[Any]:
    """The variants a value could mean: same JSON kind, then the same Literal discriminator."""
    same_kind = [o for o in options if _kind(o) == _kind_of(value)]
    options = same_kind or options
    if not isinstance(value, dict) or not all(typing_extensions.is_typeddict(o) for o in options):
        return options
    for key in ("role", "type"):
        if key not in value:
            continue
        hints = [_unwrap(typing.get_type_hints(o, include_extras=True).get(key)) for o in options]
        if all(typing.get_origin(h) is Literal for h in hints):
            return [o for o, h in zip(options, hints, strict=True) if value[key] in h.__args__]
    return options


def _kind(tp: Any) -> str:
    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if typing_extensions.is_typeddict(tp) or tp is dict or origin is dict:
        return "object"
    if origin in _SEQUENCES or _is_sequence_protocol(origin):
        return "list"
    return "scalar"


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    return "list" if isinstance(value, list) else "scalar"


def _scalar(value: Any, tp: Any, path: str) -> list[str]:
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(tp, type):
        ok = isinstance(value, tp)
    else:
        return [f"{path}: cannot check against {tp!r}"]
    return [] if ok else [f"{path}: expected {tp.__name__}, got {type(value).__name__}"]


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) in _WRAPPERS:
        tp = typing.get_args(tp)[0]
    return tp


def _is_required(td: Any, key: str, hint: Any) -> bool:
    """`__required_keys__` misses `Required[...]` in string annotations, which the SDK uses."""
    origin = typing.get_origin(hint)
    if origin is typing.Required:
        return True
    return origin is not typing.NotRequired and key in td.__required_keys__


def _is_sequence_protocol(origin: Any) -> bool:
    """The SDK's `SequenceNotStr[T]` is a Protocol, not a collections.abc class."""
    return isinstance(origin, type) and getattr(origin, "__name__", "") == "SequenceNotStr"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _schema_path(path: str, key: str) -> str:
    return _INDEX.sub("", _join(path, key))
