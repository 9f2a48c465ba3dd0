"""The fluxion-etl AWS deployment: ``python app.py`` (or ``cdk synth``/``cdk deploy``).

Synthesizes offline: environment inputs come from CDK context (``cdk.json``'s ``"fluxion"``), the
schedules from the chain's configuration file; nothing is looked up in an AWS account.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import aws_cdk as cdk
from fluxion_deploy.schedules import load_schedules
from fluxion_deploy.settings import DeploySettings
from fluxion_deploy.stack import FluxionStack

HERE = Path(__file__).resolve().parent


def standalone_context() -> dict[str, object]:
    """Run as ``python app.py`` (not by the cdk CLI): read cdk.json's context ourselves."""
    if "CDK_CONTEXT_JSON" in os.environ or "CDK_OUTDIR" in os.environ:
        return {}
    return dict(json.loads((HERE / "cdk.json").read_text()).get("context", {}))


def build(app: cdk.App) -> FluxionStack:
    settings = DeploySettings.from_context(
        app.node.try_get_context("fluxion"), image=app.node.try_get_context("image")
    )
    environment = cdk.Environment(account=settings.account, region=settings.region)
    return FluxionStack(
        app,
        settings.stack_name,
        settings=settings,
        schedules=load_schedules(settings.config_path(HERE)),
        env=environment,
        description="fluxion-etl: schedules, trigger, service and workers (deploy/aws)",
    )


def main() -> None:
    standalone = "CDK_OUTDIR" not in os.environ
    app = cdk.App(
        context=standalone_context(),
        outdir=str(HERE / "cdk.out") if standalone else None,
    )
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
