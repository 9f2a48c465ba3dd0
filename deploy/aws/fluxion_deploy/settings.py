"""The deployment's inputs: what differs per AWS environment, read from CDK context (``cdk.json``'s
``"fluxion"`` object, or ``-c fluxion='{...}'``), plus tunables with the chain's chosen defaults.

Nothing here looks anything up in an AWS account: every id is given, so ``python app.py``
synthesizes offline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

REQUIRED = (
    "vpcId",
    "availabilityZones",
    "privateSubnetIds",
    "image",
    "certificateArn",
    "domainName",
    "databaseUrlSecretArn",
    "klkBaseUrl",
)


class DeploySettingsError(ValueError):
    """A context value is missing or wrong; the message names the key and what to give."""


@dataclass(frozen=True, kw_only=True)
class DeploySettings:
    """One environment. Keys in cdk.json are the camelCase of these names."""

    # Where: the account is optional (an environment-agnostic template when absent).
    account: str | None = None
    region: str | None = None
    stack_name: str = "FluxionEtl"
    # The network and the cluster (existing; the cluster is created when no name is given).
    vpc_id: str
    availability_zones: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]
    public_subnet_ids: tuple[str, ...] = ()
    cluster_name: str | None = None
    # What runs, and how it is reached.
    image: str
    certificate_arn: str
    domain_name: str  # the name the certificate covers; point its DNS record at the load balancer
    public_load_balancer: bool = True  # False: internal ALB, and the trigger function in the VPC
    ingress_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    database_url_secret_arn: str  # a secret whose value is the database URL
    klk_base_url: str
    config_file: str = (
        "../../examples/chain.toml"  # relative to deploy/aws; also baked in the image
    )
    # Sizes, retention, alarms.
    service_cpu: int = 512
    service_memory_mib: int = 1024
    service_desired_count: int = 1
    worker_cpu: int = 512
    worker_memory_mib: int = 1024
    log_retention_days: int = 30
    alarm_email: str | None = None
    # The trigger function's own asynchronous retries (Lambda), the chain's chosen values.
    trigger_retry_attempts: int = 2
    trigger_max_event_age_seconds: int = 3600
    trigger_timeout_seconds: int = 30

    @classmethod
    def from_context(
        cls, context: Mapping[str, Any] | str | None, *, image: str | None = None
    ) -> DeploySettings:
        """``context`` is cdk.json's object, or the JSON text ``-c fluxion='{...}'`` gives;
        ``image`` (``-c image=URI``, what CI deploys) replaces the context's image."""
        if isinstance(context, str):
            try:
                context = json.loads(context)
            except ValueError as exc:
                raise DeploySettingsError(f"CDK context 'fluxion' is not JSON: {exc}") from None
        if isinstance(context, Mapping) and image:
            context = {**context, "image": image}
        if not isinstance(context, Mapping):
            raise DeploySettingsError(
                "CDK context 'fluxion' is missing: copy the example in deploy/aws/cdk.json and "
                "fill in your environment's ids"
            )
        missing = [key for key in REQUIRED if not context.get(key)]
        if missing:
            raise DeploySettingsError(f"CDK context 'fluxion' lacks {', '.join(missing)}")
        known = {_camel(f.name): f.name for f in fields(cls)}
        unknown = sorted(set(context) - set(known))
        if unknown:
            raise DeploySettingsError(
                f"CDK context 'fluxion' has unknown keys {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = {known[key]: _tupled(value) for key, value in context.items()}
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.public_load_balancer and not self.public_subnet_ids:
            raise DeploySettingsError(
                "publicSubnetIds is required for an internet-facing load balancer "
                "(or set publicLoadBalancer to false)"
            )
        if len(self.private_subnet_ids) != len(self.availability_zones):
            raise DeploySettingsError(
                "privateSubnetIds needs one subnet per entry of availabilityZones, in that order"
            )
        if not 0 <= self.trigger_retry_attempts <= 2:
            raise DeploySettingsError("triggerRetryAttempts must be 0, 1 or 2 (Lambda's limit)")
        if not 60 <= self.trigger_max_event_age_seconds <= 21600:
            raise DeploySettingsError("triggerMaxEventAgeSeconds must be 60..21600")

    def config_path(self, base: Path) -> Path:
        return (base / self.config_file).resolve()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _tupled(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
