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
