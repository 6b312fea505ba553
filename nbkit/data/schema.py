"""A JSON Schema (Draft 2020-12) of the Nova RFT record, for tools that speak JSON Schema.

It encodes every per-record error rule of `nbkit.data.validate` that a schema can express. What a schema
cannot say is left to the validator: unique tool names, `required` names present in `properties`,
ids unique across lines, and anything about the raw line (UTF-8, BOM, NaN). Warnings are not errors here.
"""

from __future__ import annotations

from typing import Any

from nbkit.data.records import PROFILES, ROLES, SYSTEM_ROLES

_NONBLANK = {"type": "string", "pattern": r"\S"}


def json_schema(profile: str = "sagemaker") -> dict[str, Any]:
    """The record schema under `profile` ("sagemaker" or "bedrock": Bedrock allows fewer roles)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {PROFILES}")
    message = {
        "type": "object",
        "required": ["role"],
        "additionalProperties": False,
        "properties": {
            "role": {"enum": sorted(ROLES[profile])},
            "tool_calls": {"type": "array", "items": {"$ref": "#/$defs/tool_call"}},
            "tool_call_id": _NONBLANK,
            "content": True,
        },
        "anyOf": [
            {"required": ["content"], "properties": {"content": {"$ref": "#/$defs/content"}}},
            {  # an assistant turn that only calls tools may have no text
                "required": ["tool_calls"],
                "properties": {"role": {"const": "assistant"}, "tool_calls": {"minItems": 1},
                               "content": {"anyOf": [{"type": "null"}, {"type": "string"}]}},
            },
        ],
    }
    not_system = {"not": {"type": "object", "required": ["role"],
                          "properties": {"role": {"enum": sorted(SYSTEM_ROLES)}}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Nova RFT record ({profile} profile)",
        "type": "object",
        "required": ["messages"],
        "properties": {
            "id": _NONBLANK,
            "messages": {
                "type": "array",
                "minItems": 1,
                "prefixItems": [{"$ref": "#/$defs/message"}],
                "items": {"allOf": [{"$ref": "#/$defs/message"}, not_system]},
                "contains": {"type": "object", "required": ["role"], "properties": {"role": {"const": "user"}}},
            },
            "reference_answer": {"anyOf": [
                {"type": ["string", "object", "null"]},
                {"type": "array", "maxItems": 0},
            ]},
            "tools": {"type": "array", "items": {"$ref": "#/$defs/tool"}},
        },
        "$defs": {
            "message": message,
            "content": {"anyOf": [
                _NONBLANK,
                {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/text_part"}},
            ]},
            "text_part": {
                "type": "object", "required": ["type", "text"], "additionalProperties": False,
                "properties": {"type": {"const": "text"}, "text": _NONBLANK},
            },
            "tool_call": {
                "type": "object", "required": ["function"],
                "properties": {"function": {"type": "object", "required": ["name"], "properties": {"name": _NONBLANK}}},
            },
            "tool": {
                "type": "object", "required": ["type", "function"],
                "properties": {
                    "type": {"const": "function"},
                    "function": {
                        "type": "object", "required": ["name", "description", "parameters"],
                        "properties": {
                            "name": _NONBLANK,
                            "description": _NONBLANK,
                            "parameters": {
                                "type": "object", "required": ["type", "properties"],
                                "properties": {
                                    "type": {"const": "object"},
                                    "properties": {"type": "object", "additionalProperties": {"type": "object"}},
                                    "required": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            },
        },
    }
