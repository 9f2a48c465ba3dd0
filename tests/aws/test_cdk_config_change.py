"""Changing the chain's configuration file (or the context) changes what is synthesized: one
synthesis of a changed configuration for the whole module."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cdk_support import synthesize

from fluxion_etl.config import bundled_config_text

pytestmark = pytest.mark.slow

CHANGED_SCHEDULES = """
[[schedules]]
name = "inventory"
job = "inventory"
cron = "0,30 7-20 * * 1-6"

[[schedules]]
name = "sales"
job = "sales"
cron = "*/15 * * * *"
timezone = "America/Bogota"
retry_attempts = 1
max_event_age_seconds = 900

[[schedules]]
name = "sales-reconcile"
job = "reconcile"
cron = "0 3 * * *"
enabled = false

[[schedules]]
name = "bosque-late-sales"
job = "sales"
cron = "50 23 * * *"
locations = ["tienda_08"]
"""


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("changed")
    config = folder / "chain.toml"
    config.write_text(bundled_config_text() + CHANGED_SCHEDULES)
    _, template = synthesize(
        folder / "cdk.out",
        configFile=str(config),
        triggerRetryAttempts=1,
        triggerMaxEventAgeSeconds=1800,
    )
    return dict(template["Resources"])


def _schedules(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["Name"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Scheduler::Schedule"
    }


def test_changed_crons_zones_and_states_are_synthesized(resources: dict[str, Any]) -> None:
    assert {
        name: (p["ScheduleExpression"], p["ScheduleExpressionTimezone"], p["State"])
        for name, p in _schedules(resources).items()
    } == {
        "inventory": ("cron(0,30 7-20 ? * 2-7 *)", "America/Caracas", "ENABLED"),
        "sales": ("cron(0,15,30,45 * * * ? *)", "America/Bogota", "ENABLED"),
        "sales-reconcile": ("cron(0 3 * * ? *)", "America/Caracas", "DISABLED"),
        "bosque-late-sales": ("cron(50 23 * * ? *)", "America/Caracas", "ENABLED"),
    }


def test_a_schedules_retry_policy_comes_from_its_definition(resources: dict[str, Any]) -> None:
    policies = {n: p["Target"]["RetryPolicy"] for n, p in _schedules(resources).items()}
    assert policies["sales"] == {"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 900}
    assert policies["inventory"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600}


def test_a_schedule_of_one_location_sends_that_location(resources: dict[str, Any]) -> None:
    event = json.loads(_schedules(resources)["bosque-late-sales"]["Target"]["Input"])
    assert event["locations"] == ["tienda_08"]


def test_the_functions_retries_come_from_the_context(resources: dict[str, Any]) -> None:
    (config,) = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert config["Properties"]["MaximumRetryAttempts"] == 1
    assert config["Properties"]["MaximumEventAgeInSeconds"] == 1800


def test_stale_thresholds_follow_the_longest_wait_between_fires(resources: dict[str, Any]) -> None:
    stale = {
        r["Properties"]["Dimensions"][0]["Value"]: r["Properties"]["Threshold"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"].get("MetricName") == "LastSuccessAgeSeconds"
    }
    # inventory waits longest from Saturday 20:30 to Monday 07:00 (34.5 h)
    assert stale["inventory"] == 2 * 34.5 * 3600 + 20 * 60
    # sales: every 15 minutes (the once-a-day schedule of one store fires in between)
    assert stale["sales"] == 2 * 15 * 60 + 25 * 60
