"""Synthesizing the CDK app for tests: the example context of deploy/aws/cdk.json, an output
directory of the test's own, and a configuration file of the test's choosing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# jsii prints a banner about Node 20 on every start; the tests know.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

DEPLOY_AWS = Path(__file__).resolve().parents[2] / "deploy" / "aws"


def example_context() -> dict[str, Any]:
    return dict(json.loads((DEPLOY_AWS / "cdk.json").read_text())["context"]["fluxion"])


def synthesize(outdir: Path, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """(assertions Template, template dict) of the example environment, ``overrides`` applied."""
    import aws_cdk as cdk
    from app import build
    from aws_cdk.assertions import Template

    context = {**example_context(), **overrides}
    app = cdk.App(context={"fluxion": context}, outdir=str(outdir))
    template = Template.from_stack(build(app))
    return template, template.to_json()
