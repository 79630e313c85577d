"""What every config section shares: strict models (unknown keys are errors) and the error type."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration problem, with the field path and what was expected."""


class Strict(BaseModel):
    """A config section: unknown keys fail, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
