"""Cross-field rules written once and enforced twice.

Each rule carries its CEL expression (the API server evaluates it through
``x-kubernetes-validations`` in the generated CRD) and a Python predicate over
the same model (the operator evaluates it when it parses an object that slipped
past the CRD, e.g. an old CRD version or an emulator). Both sides show the same
message, so a user reads the same instruction wherever the object is rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

FieldReason = Literal["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired"]


@dataclass(frozen=True)
class CrossFieldRule:
    """A constraint between fields of one object, in CEL and in Python."""

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field_path: str | None = None
    reason: FieldReason | None = None

    def as_validation(self) -> dict[str, str]:
        """The rule as one entry of ``x-kubernetes-validations``."""
        entry = {"rule": self.cel, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        if self.reason is not None:
            entry["reason"] = self.reason
        return entry
