"""The base class of every model that becomes part of a CRD schema."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

from mcpfleet_contracts.rules import CrossFieldRule


def _add_cel_rules(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    rules: tuple[CrossFieldRule, ...] = getattr(cls, "cel_rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.as_validation() for rule in rules]


class CRDModel(BaseModel):
    """Camel-case on the wire, snake_case in Python, unknown fields rejected.

    Subclasses list their cross-field constraints in ``cel_rules``; the rules
    land in the generated schema and are checked after field validation.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
        json_schema_extra=_add_cel_rules,
    )

    cel_rules: ClassVar[tuple[CrossFieldRule, ...]] = ()

    @model_validator(mode="after")
    def _check_cross_field_rules(self) -> Self:
        broken = [rule.message for rule in self.cel_rules if not rule.holds(self)]
        if broken:
            raise ValueError("; ".join(broken))
        return self

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON form as it is stored in the API server."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
