"""Tool input schemas rewritten to the JSON-schema subset Gemini-style endpoints accept.

Gemini's function declarations take an OpenAPI 3.0 `Schema`, and its OpenAI-compatible
endpoint answers 400 "Unknown name ..." for any other keyword ($schema,
additionalProperties, propertyNames, exclusiveMinimum, const, $ref, ... — Claude Code's
schemas carry several). So keywords are kept from a whitelist, and the few with a close
equivalent are translated instead of lost:
- `type: [T, "null"]` → `type: T, nullable: true`; several types → `anyOf` of each;
- `const: "x"` → `enum: ["x"]`; `oneOf` → `anyOf` (looser, never wrongly stricter);
- `exclusiveMinimum/Maximum: n` → `minimum/maximum: n` when no inclusive bound is given;
- `enum` kept only when every value is a string (Gemini's enum is string[]), a null
  member becoming `nullable: true`;
- `format` kept only for the values Gemini documents; `required` limited to the properties
  that exist; tuple-style `items` (a list) dropped.
"""

from __future__ import annotations

from typing import Any

GEMINI_KEYWORDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "default",
        "example",
        "propertyOrdering",
    }
)
GEMINI_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})


def gemini_schema(schema: Any) -> dict[str, Any]:
    """A new schema (the input is not modified) using only keywords Gemini accepts."""
    if not isinstance(schema, dict):
        return {}  # boolean schemas (`true`/`false`) have no Gemini form
    out: dict[str, Any] = {}
    for key, value in schema.items():
        out.update(_keyword(key, value))
    _translate_bounds(schema, out)
    _limit_required(out)
    return out


def _keyword(key: str, value: Any) -> dict[str, Any]:
    if key == "properties" and isinstance(value, dict):
        return {key: {name: gemini_schema(sub) for name, sub in value.items()}}
    if key == "items":
        return {key: gemini_schema(value)} if isinstance(value, dict) else {}
    if key in ("anyOf", "oneOf"):
        return {"anyOf": [gemini_schema(sub) for sub in value]} if isinstance(value, list) else {}
    if key == "type" and isinstance(value, list):
        return _type_list(value)
    if key == "format":
        return {key: value} if value in GEMINI_FORMATS else {}
    if key == "enum":
        return _enum(value)
    return {key: value} if key in GEMINI_KEYWORDS else {}


def _type_list(types: list[Any]) -> dict[str, Any]:
    named = [t for t in types if t != "null"]
    out: dict[str, Any] = {"nullable": True} if len(named) < len(types) else {}
    if len(named) == 1:
        out["type"] = named[0]
    elif named:
        out["anyOf"] = [{"type": t} for t in named]
    return out


def _enum(values: Any) -> dict[str, Any]:
    if not isinstance(values, list):
        return {}
    present = [v for v in values if v is not None]
    if not present or not all(isinstance(v, str) for v in present):
        return {}
    out: dict[str, Any] = {"enum": present}
    if len(present) < len(values):
        out["nullable"] = True
    return out


def _translate_bounds(schema: dict[str, Any], out: dict[str, Any]) -> None:
    const = schema.get("const")
    if isinstance(const, str) and "enum" not in out:
        out["enum"] = [const]
    for exclusive, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        bound = schema.get(exclusive)
        # Draft 4 wrote these as booleans beside minimum/maximum; only numbers carry a bound.
        if isinstance(bound, int | float) and not isinstance(bound, bool) and inclusive not in out:
            out[inclusive] = bound


def _limit_required(out: dict[str, Any]) -> None:
    required = out.get("required")
    properties = out.get("properties")
    if not isinstance(required, list) or not isinstance(properties, dict):
        return
    kept = [name for name in required if name in properties]
    if kept:
        out["required"] = kept
    else:
        del out["required"]
