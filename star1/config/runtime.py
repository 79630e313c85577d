"""`store:` and `ray:` — where artifacts live and where work runs."""

from __future__ import annotations

from pydantic import Field

from star1.config.base import Strict


class StoreConfig(Strict):
    uri: str = Field("./artifacts", description="local folder or s3://bucket/prefix")
    endpoint_url: str | None = Field(None, description="S3 endpoint; default: env AWS_ENDPOINT_URL")
    region: str | None = Field(None, description="S3 region; default: env AWS_REGION / AWS_DEFAULT_REGION")


class RayConfig(Strict):
    enabled: bool = Field(True, description="run through Ray; false runs everything in this process")
    address: str | None = Field(None, description="cluster address; default: env RAY_ADDRESS, else local")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for a local cluster")
    resource_wait_s: float = Field(
        600.0,
        ge=0,
        description="on a running cluster (ray.address / RAY_ADDRESS), how long train and the ray eval "
        "backend wait for the GPUs, accelerator type or custom resources they ask for to appear (the "
        "autoscaler is asked for them meanwhile) before failing with exit 7 (infrastructure)",
    )
