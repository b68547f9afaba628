"""What a human-in-the-loop form shows for each field, and how a submitted field is read back.

:func:`field_specs` describes a request's inputs for the browser (JSON only): one text box for
a plain request, one input per field of a pydantic schema with its title, description, default
and limits. :func:`read_values` turns what the browser sent back into the answer, and
:func:`field_errors` maps pydantic's errors to the fields they belong to, so the form can show
each one beside its field. The answer itself is still validated by the engine
(``HumanLoop.answer``), with exactly the same rules as any other responder.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Mapping
from typing import Any

ANSWER = "answer"  # the one field of a plain (text) request

_LIMITS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("multiple_of", "multiple of"))


def _display(value: Any, limit: int = 60) -> str:
    text = value.value if isinstance(value, enum.Enum) else value
    text = text if isinstance(text, str) else repr(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _options(annotation: Any) -> list[Any] | None:
    """The allowed values of a Literal or Enum field (None for other types)."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return list(annotation)
    return None


def _limits(info: Any) -> list[str]:
    out = []
    for item in info.metadata:
        for attr, sign in _LIMITS:
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {value:g}" if isinstance(value, (int, float)) else f"{sign} {value}")
        low, high = getattr(item, "min_length", None), getattr(item, "max_length", None)
        if low is not None:
            out.append(f"at least {low} characters")
        if high is not None:
            out.append(f"at most {high} characters")
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            out.append(f"matching {pattern}")
    return out


def _schema_field(name: str, info: Any) -> tuple[dict[str, Any], Any]:
    """(the spec of one pydantic field, its initial value in the browser)."""
    annotation = info.annotation
    has_default = not info.is_required()
    default = info.get_default(call_default_factory=True) if has_default else None
    hint = [info.description] if info.description else []
    hint += _limits(info)
    if has_default and default is not None:
        hint.append(f"default {_display(default)}")
    elif not has_default:
        hint.append("required")
    spec: dict[str, Any] = {"name": name, "title": info.title or name.replace("_", " "), "hint": "; ".join(hint)}
    options = _options(annotation)
    if annotation is bool:
        spec["kind"] = "checkbox"
        return spec, bool(default)
    if options is not None:
        spec["kind"] = "select"
        spec["options"] = [_display(o) for o in options]
        return spec, options.index(default) if default in options else 0
    if annotation in (int, float):
        spec["kind"] = "number"
    else:
        spec["kind"] = "text"
    spec["placeholder"] = "" if has_default else getattr(annotation, "__name__", "")
    return spec, "" if default is None else str(default)


def field_specs(request: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the form's description for the browser, the initial field values) of ``request``."""
    spec: dict[str, Any] = {"state": request.state, "prompt": request.prompt, "fields": [], "choices": []}
    values: dict[str, Any] = {}
    if request.choices is not None:
        spec["kind"] = "choices"
        spec["choices"] = [str(c) for c in request.choices]
    elif request.schema is not None:
        spec["kind"] = "schema"
        for name, info in request.schema.model_fields.items():
            field, values[name] = _schema_field(name, info)
            spec["fields"].append(field)
    else:
        spec["kind"] = "text"
        spec["fields"].append({"name": ANSWER, "title": "your answer", "kind": "text", "hint": "",
                               "placeholder": "your answer"})
        values[ANSWER] = ""
    return spec, values


def read_values(request: Any, content: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(the answer, the raw field values) from a submit message of the browser.

    Raises:
        ValueError: the message does not fit the request (an unknown choice or field).
    """
    if request.choices is not None:
        index = content.get("choice")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(request.choices):
            raise ValueError(f"no choice number {index!r}")
        return request.choices[index], {}
    raw = content.get("values")
    if not isinstance(raw, Mapping):
        raise ValueError("the submit message carries no values")
    if request.schema is None:
        text = raw.get(ANSWER, "")
        return (text if isinstance(text, str) else str(text)), {ANSWER: text}
    answer: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for name, info in request.schema.model_fields.items():
        if name not in raw:
            continue
        value = kept[name] = raw[name]
        options = _options(info.annotation)
        if options is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(options):
                raise ValueError(f"field {name!r}: no option number {value!r}")
            value = options[value]
        elif isinstance(value, str) and value.strip() == "":
            continue  # left empty: the field's default applies (or pydantic says it is required)
        answer[name] = value
    return answer, kept


def field_errors(schema: Any, answer: Any) -> dict[str, str]:
    """pydantic's complaints about ``answer``, by field (model-level ones under ``""``)."""
    if schema is None or not isinstance(answer, Mapping):
        return {}
    try:
        schema.model_validate(dict(answer))
    except Exception as exc:
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            return {"": str(exc)}
        out: dict[str, str] = {}
        for err in errors():
            loc = err.get("loc", ())
            key = str(loc[0]) if loc else ""
            text = err.get("msg", "invalid")
            out[key] = f"{out[key]}; {text}" if key in out else text
        return out
    return {}
