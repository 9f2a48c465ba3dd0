"""The CDK app's environment inputs: a wrong context stops before anything is synthesized."""

from __future__ import annotations

import json

import pytest
from cdk_support import example_context
from fluxion_deploy.settings import DeploySettings, DeploySettingsError


def test_the_example_context_reads_into_settings() -> None:
    settings = DeploySettings.from_context(example_context())
    assert settings.private_subnet_ids == ("subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2")
    assert (settings.trigger_retry_attempts, settings.trigger_max_event_age_seconds) == (2, 3600)


def test_a_missing_context_says_where_to_start() -> None:
    with pytest.raises(DeploySettingsError, match=r"copy the example in deploy/aws/cdk\.json"):
        DeploySettings.from_context(None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": ""}, "lacks image"),
        ({"imageTag": "x"}, "unknown keys imageTag"),
        ({"publicSubnetIds": []}, "publicSubnetIds is required"),
        ({"privateSubnetIds": ["subnet-1"]}, "one subnet per entry of availabilityZones"),
        ({"triggerRetryAttempts": 3}, "0, 1 or 2"),
    ],
)
def test_wrong_context_values_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(DeploySettingsError, match=message):
        DeploySettings.from_context({**example_context(), **change})


def test_ci_passes_the_context_as_json_and_the_image_apart() -> None:
    text = json.dumps(example_context())
    settings = DeploySettings.from_context(text, image="1.dkr.ecr.us-east-1.amazonaws.com/f:abc")
    assert settings.image == "1.dkr.ecr.us-east-1.amazonaws.com/f:abc"
    assert settings.vpc_id == example_context()["vpcId"]
