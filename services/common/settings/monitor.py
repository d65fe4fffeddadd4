"""What the monitor serves and keeps (``monitor.*``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

__all__ = ["MonitorSettings"]


class MonitorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("0.0.0.0", description="address the monitor binds to")
    port: int = Field(
        9108, ge=0, le=65535,
        description="port of the monitor's `/metrics`, `/healthz`, `/estimate`",
    )
    stale_after_s: float = Field(60.0, gt=0, description="/healthz fails after this long")
    model_id: str | None = Field(None, description="only this model's estimates (default: any)")
    max_clock_skew_s: float = Field(
        300.0, gt=0,
        description="an estimate stamped further in the monitor's future is counted invalid",
    )
    forget_after_s: float = Field(
        3600.0, gt=0, description="a model silent this long is no longer shown or kept"
    )
    max_categories: int = Field(
        65_536, ge=2, le=65_536,
        description="an estimate with more categories is counted invalid",
    )
    max_models: int = Field(
        100, ge=1, le=10_000,
        description="models shown at once (each is a `model_id` label value): an estimate of "
        "a new model past this many is counted invalid until one is forgotten",
    )
    max_series_per_model: int = Field(
        200, ge=2, le=65_536,
        description="`category` series of one model per per-category metric: a model with more "
        "categories shows its largest by estimate and `category=\"_other\"`, the sum of the rest "
        "(all of them: `/estimate`, the estimates topic)",
    )
    max_category_series: int = Field(
        10_000, ge=1, le=10_000_000,
        description="per-category series of all models together: past it each model shows "
        "fewer of its largest (at least `_other`), counted in "
        "`gumbel_monitor_category_series_omitted_total`",
    )
    http_idle_timeout_s: float = Field(
        30.0, gt=0, description="the HTTP server closes a connection idle this long"
    )
    producer_metrics_url: HttpUrl | None = Field(
        None, description="the producer's `/metrics`, read every few seconds for the true "
        "distribution that the live page at `/` shows next to the estimate (`up` sets it; "
        "unset: the page shows no truth)",
    )
    truth_model_id: str | None = Field(
        None, description="the model the producer at `producer_metrics_url` feeds: the live "
        "page compares only it with the truth (`up` sets it; unset: every model with as many "
        "categories, the page naming the producer as the truth's source)",
    )
