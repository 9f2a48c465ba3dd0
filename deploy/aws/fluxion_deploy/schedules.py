"""Schedules: one EventBridge Scheduler schedule per product schedule.

The schedules come from the chain's configuration file through the product's own converter
(``fluxion_etl.domain.exports.to_eventbridge``, the one behind ``fluxion-etl export eventbridge``),
so the cron expression, time zone, state and retry policy deployed here are exactly the ones the
product reports. The Scheduler's retry policy and dead-letter queue cover failed *deliveries*
(the function could not be invoked); the function's own failures are retried by Lambda
(``trigger``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from fluxion_deploy.trigger.handler import JOB_PATHS
from fluxion_etl.config import load_config
from fluxion_etl.domain.exports import EventBridgeSchedule, to_eventbridge
from fluxion_etl.domain.schedules import ScheduleDef
from fluxion_etl.store.schedules import definitions_from_config

# Filled in by EventBridge Scheduler at each delivery; a retried delivery keeps the same time,
# which is what makes it one run (the service's idempotency key is schedule + scheduled time).
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
EXECUTION_ID = "<aws.scheduler.execution-id>"
ATTEMPT = "<aws.scheduler.attempt-number>"


def load_schedules(config_file: Path) -> tuple[ScheduleDef, ...]:
    """The configuration file's schedules, with the defaults for the names it leaves out."""
    return definitions_from_config(load_config(config_file))


def eventbridge_schedule(definition: ScheduleDef) -> EventBridgeSchedule:
    """As EventBridge has it; a schedule EventBridge cannot express stops the synthesis with the
    converter's reason, a job the trigger has no route for with the trigger's."""
    converted = to_eventbridge(definition)
    if converted.job not in JOB_PATHS:
        raise ValueError(f"schedule {converted.name}: the trigger has no route for {converted.job}")
    return converted


def scheduler_input(schedule: EventBridgeSchedule) -> str:
    """The event the function receives: which fire this is."""
    return json.dumps(
        {
            "schedule": schedule.name,
            "job": schedule.job,
            "locations": None if schedule.locations is None else list(schedule.locations),
            "scheduled_time": SCHEDULED_TIME,
            "execution_id": EXECUTION_ID,
            "attempt": ATTEMPT,
        },
        separators=(",", ":"),
    )


class Schedules(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        schedules: Sequence[ScheduleDef],
        function: lambda_.IFunction,
        group_name: str,
    ) -> None:
        super().__init__(scope, id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            retention_period=Duration.days(14),
        )
        self.group = scheduler.CfnScheduleGroup(self, "Group", name=group_name)
        self.role = self._role(function)
        self.schedules = {
            s.name: self._schedule(eventbridge_schedule(s), function, group_name) for s in schedules
        }

    def _role(self, function: lambda_.IFunction) -> iam.Role:
        """What the Scheduler assumes: invoke the function, send to the dead-letter queue."""
        account = Stack.of(self).account
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": account}},
            ),
            description="EventBridge Scheduler: invoke the fluxion-etl trigger, dead-letter to SQS",
        )
        function.grant_invoke(role)
        self.dead_letter_queue.grant_send_messages(role)
        return role

    def _schedule(
        self, schedule: EventBridgeSchedule, function: lambda_.IFunction, group_name: str
    ) -> scheduler.CfnSchedule:
        cfn = scheduler.CfnSchedule(
            self,
            f"Schedule-{schedule.name}",
            name=schedule.name,
            group_name=group_name,
            description=_description(schedule),
            schedule_expression=schedule.expression,
            schedule_expression_timezone=schedule.timezone,
            state=schedule.state,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            target=scheduler.CfnSchedule.TargetProperty(
                arn=function.function_arn,
                role_arn=self.role.role_arn,
                input=scheduler_input(schedule),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=schedule.retry_attempts,
                    maximum_event_age_in_seconds=schedule.max_event_age_seconds,
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=self.dead_letter_queue.queue_arn
                ),
            ),
        )
        cfn.node.add_dependency(self.group)
        return cfn


def _description(schedule: EventBridgeSchedule) -> str:
    """What the console shows beside the schedule, with the converter's notes (e.g. DST)."""
    text = f"fluxion-etl {schedule.job} schedule"
    if schedule.notes:
        text += ": " + "; ".join(schedule.notes)
    return text[:512]
