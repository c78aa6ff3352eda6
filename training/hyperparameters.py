"""Hyperparameters as declared data: type, range or choices, default, tunable.

Validation runs before any data is read, so a typo costs seconds, not a training run.
Values arrive already JSON-decoded (see training.environment.decode_value) but may still
be strings ("0.3"): each declaration converts what it can and names what it cannot.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from container.values import boolean
from training.errors import UserError


@dataclass(frozen=True)
class Hyperparameter:
    """One declared hyperparameter."""

    name: str
    kind: type  # int, float, str or bool
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    tunable: bool = False
    nullable: bool = False
    # A family of keys rather than one: any '<prefix><suffix>' (e.g. target_precision_<label>, whose
    # suffixes are only known from the data); each given key is parsed and returned under its own name.
    prefix: str | None = None

    def parse(self, value: Any) -> Any:
        is_null = value is None or (
            self.nullable and isinstance(value, str) and value.strip().lower() in {"none", "null"})
        if is_null:
            if self.nullable:
                return None
            raise UserError(f"Hyperparameter '{self.name}' needs a value ({self.describe()})")
        try:
            converted = self._convert(value)
        except (TypeError, ValueError):
            raise UserError(
                f"Hyperparameter '{self.name}' = {value!r} is not a valid {self.kind.__name__}"
                f" ({self.describe()})"
            ) from None
        if self.choices is not None and converted not in self.choices:
            options = ", ".join(repr(c) for c in self.choices)
            raise UserError(f"Hyperparameter '{self.name}' = {value!r} must be one of: {options}")
        if self.min is not None and converted < self.min:
            raise UserError(f"Hyperparameter '{self.name}' = {value!r} must be >= {self.min}")
        if self.max is not None and converted > self.max:
            raise UserError(f"Hyperparameter '{self.name}' = {value!r} must be <= {self.max}")
        return converted

    def _convert(self, value: Any) -> Any:
        if self.kind is bool:
            parsed = boolean(value)
            if parsed is None:
                raise ValueError(value)
            return parsed
        if self.kind is int:
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if self.kind is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if self.kind is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
        return self.kind(value)

    def describe(self) -> str:
        parts = [self.kind.__name__]
        if self.choices is not None:
            parts.append("one of " + "/".join(str(c) for c in self.choices))
        if self.min is not None or self.max is not None:
            parts.append(f"range [{self.min if self.min is not None else '-inf'}, "
                         f"{self.max if self.max is not None else 'inf'}]")
        parts.append(f"default {self.default!r}")
        return ", ".join(parts)


def validate(
    raw: Mapping[str, Any], declared: Sequence[Hyperparameter], context: str
) -> dict[str, Any]:
    """Defaults filled in, values converted and checked, unknown keys rejected. A key of a declared
    family (``prefix``) is parsed by that declaration and kept under its own name; a family has no
    default entry."""
    by_name = {h.name: h for h in declared if h.prefix is None}
    families = [h for h in declared if h.prefix is not None]

    def family(key: str) -> Hyperparameter | None:
        return next((h for h in families if h.prefix is not None and key.startswith(h.prefix)
                     and len(key) > len(h.prefix)), None)

    unknown = [k for k in raw if k not in by_name and family(k) is None]
    if unknown:
        key = sorted(unknown)[0]
        names = [*by_name, *(h.name for h in families)]
        hint = difflib.get_close_matches(key, names, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        raise UserError(
            f"Unknown hyperparameter '{key}' for {context}{suggestion} "
            f"Known: {', '.join(sorted(names))}"
        )
    found = {h.name: h.parse(raw[h.name]) if h.name in raw else h.default for h in by_name.values()}
    for key, value in raw.items():
        declaration = family(key) if key not in by_name else None
        if declaration is not None:
            found[key] = replace(declaration, name=key, prefix=None).parse(value)
    return found


def table(declared: Iterable[Hyperparameter]) -> str:
    """Markdown rows for the README."""
    rows = ["| name | type | default | range / choices | tunable | meaning |", "|---|---|---|---|---|---|"]
    for h in declared:
        if h.choices is not None:
            rng = ", ".join(repr(c)[1:-1] if isinstance(c, str) else str(c) for c in h.choices)
        elif h.min is not None or h.max is not None:
            rng = f"[{h.min if h.min is not None else ''}, {h.max if h.max is not None else ''}]"
        else:
            rng = ""
        cells = [f"`{h.name}`", h.kind.__name__, repr(h.default), rng, "yes" if h.tunable else "", h.doc]
        # A '|' inside a cell would split it.
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows)
