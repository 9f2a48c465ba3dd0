"""What the service and the worker containers share: image, environment and secrets."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_secretsmanager as secretsmanager

# Where the Dockerfile puts the chain's configuration file (FLUXION_CONFIG in the image).
CONFIG_IN_IMAGE = "/etc/fluxion/chain.toml"
SERVICE_PORT = 8000


def product_environment(*, klk_base_url: str, extra: Mapping[str, str] = {}) -> dict[str, str]:
    """Plain settings every fluxion-etl container gets (never a secret)."""
    return {
        "FLUXION_KLK_BASE_URL": klk_base_url,
        "FLUXION_CONFIG": CONFIG_IN_IMAGE,
        "FLUXION_LOG_FORMAT": "json",
        **extra,
    }


def product_secrets(database_url: secretsmanager.ISecret) -> dict[str, ecs.Secret]:
    """Secrets ECS reads from Secrets Manager when it starts a task (never in the template)."""
    return {"FLUXION_DATABASE_URL": ecs.Secret.from_secrets_manager(database_url)}
