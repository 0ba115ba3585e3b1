"""The pydantic bases every resource's records and bodies build on, and the values they share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

# The largest id the databases keep (a signed 64-bit integer): a bigger one names nothing, and
# the database drivers refuse to even compare with it.
ID_MAX = 2**63 - 1


class Record(BaseModel):
    """Base of what the API answers: every field is always there (null when empty)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class Body(BaseModel):
    """Base of request bodies: an unknown field is refused, so that a typo does not pass."""

    model_config = ConfigDict(extra="forbid")


# Times a request may give: any time zone's offset moves them less than a day, so they can be
# compared and converted without running off the calendar (year 1 or 9999 would).
YEAR_MIN, YEAR_MAX = 1970, 9998


def _in_range(value: datetime) -> datetime:
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        msg = f"the year must be {YEAR_MIN} to {YEAR_MAX}"
        raise ValueError(msg)
    return value


Time = Annotated[datetime, AfterValidator(_in_range)]
"""A time in a request body (ISO 8601)."""


def body_required(model: type[BaseModel]) -> bool:
    """Whether a body must be sent: some field of it has no default."""
    return any(field.is_required() for field in model.model_fields.values())
