"""How every command logs (``GUMBEL_LOG_LEVEL``, ``GUMBEL_LOG_FORMAT``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LogSettings"]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class LogSettings(BaseSettings):
    """How every command logs: ``--log-level``/``GUMBEL_LOG_LEVEL``, ``GUMBEL_LOG_FORMAT``."""

    model_config = SettingsConfigDict(env_prefix="GUMBEL_", extra="ignore", validate_default=True)

    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
    ] = Field("INFO", description="`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`")
    log_format: Annotated[Literal["text", "json"], BeforeValidator(_lower)] = Field(
        "text",
        description="`text`: a line for people; `json`: one JSON object per line (`time`, "
        "`level`, `logger`, `message`, `model_id`, the `actor`, partitions and offsets as "
        "fields, `exception`) for Loki or ELK, the trainer's Ray actors' lines included",
    )
