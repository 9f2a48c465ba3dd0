"""Monitoring: alarms an operator acts on, all to one SNS topic.

- trigger errors (the function raised: the service refused or did not answer a fire);
- the function's on-failure queue and the Scheduler's dead-letter queue (a fire given up on);
- ECS task failures (a worker or service task that failed to start or died abnormally), from
  ECS's task state events, kept in a queue for inspection;
- stale data: per watched job, the age of the stalest location's last success, which the service
  publishes as a CloudWatch metric (embedded metric format); missing data is breaching, so a
  service that stopped publishing is as loud as stale data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from fluxion_etl.domain import cron
from fluxion_etl.domain.schedules import ScheduleDef
from fluxion_etl.domain.states import Job
from fluxion_etl.launchers.ecs import LAST_SUCCESS_AGE_METRIC, METRIC_NAMESPACE
from fluxion_etl.settings import Settings

PERIOD = Duration.minutes(5)
# Exit code 1 is a run that ended partial or failed: the ledger and the stale alarm report those.
NORMAL_EXIT_CODES = [0, 1]
WATCHED_JOBS = (Job.INVENTORY, Job.SALES)  # the jobs whose freshness the service publishes
_SAMPLE_START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday: a whole week of fire times


def stale_after_seconds(schedules: Sequence[ScheduleDef]) -> dict[str, int]:
    """Per watched job with an enabled schedule: two periods plus the job's deadline (SPEC §4.12).

    The period is the longest wait between two fire times in a week, so a schedule restricted to
    business hours does not alarm every night (an alarm cannot know opening hours).
    """
    out = {}
    for job in WATCHED_JOBS:
        crons = [(s.cron, s.timezone) for s in schedules if s.job is job and s.enabled]
        if crons:
            period = _longest_wait(crons)
            deadline = Settings.model_fields[f"{job.value}_deadline_seconds"].default
            out[job.value] = int(2 * period.total_seconds() + deadline)
    return out


def _longest_wait(crons: Sequence[tuple[str, str]]) -> timedelta:
    end = _SAMPLE_START + timedelta(days=8)
    times = sorted(
        {
            t
            for expression, zone in crons
            for t in cron.fires_between(expression, zone, _SAMPLE_START, end)
        }
    )
    return max(b - a for a, b in pairwise(times))


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        trigger_function: lambda_.IFunction,
        queues: Mapping[str, sqs.IQueue],
        cluster_arn: str,
        task_groups: Sequence[str],
        stale_after_seconds: Mapping[str, int],
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(self, "Alarms", display_name="fluxion-etl alarms")
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._alarm(
            "TriggerErrors",
            trigger_function.metric_errors(period=PERIOD, statistic="Sum"),
            "The trigger function raised: the service refused or did not answer a fire "
            "(Lambda retries it; see the function's log)",
        )
        for name, queue in queues.items():
            self._alarm(
                name,
                queue.metric_approximate_number_of_messages_visible(
                    period=PERIOD, statistic="Maximum"
                ),
                f"A fire was given up on and is in the {name} queue: read it, fix, then purge",
            )
        self.task_failures = sqs.Queue(
            self,
            "TaskFailures",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            retention_period=Duration.days(14),
        )
        rule = self._task_failure_rule(cluster_arn, task_groups)
        self._alarm(
            "EcsTaskFailures",
            cloudwatch.Metric(
                namespace="AWS/Events",
                metric_name="TriggeredRules",
                dimensions_map={"RuleName": rule.rule_name},
                period=PERIOD,
                statistic="Sum",
            ),
            "An ECS task failed to start or died abnormally (its event: the TaskFailures queue)",
        )
        for job, seconds in sorted(stale_after_seconds.items()):
            self._stale_alarm(job, seconds)

    def _alarm(self, name: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_description=description,
            metric=metric,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms[name] = alarm
        return alarm

    def _task_failure_rule(self, cluster_arn: str, task_groups: Sequence[str]) -> events.Rule:
        rule = events.Rule(
            self,
            "TaskFailureRule",
            description="fluxion-etl ECS tasks that failed to start or exited abnormally",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Task State Change"],
                detail={
                    "clusterArn": [cluster_arn],
                    "lastStatus": ["STOPPED"],
                    "group": list(task_groups),
                    "$or": [
                        {"stopCode": ["TaskFailedToStart"]},
                        {"containers": {"exitCode": [{"anything-but": NORMAL_EXIT_CODES}]}},
                    ],
                },
            ),
        )
        rule.add_target(targets.SqsQueue(self.task_failures))
        return rule

    def _stale_alarm(self, job: str, seconds: int) -> None:
        alarm = cloudwatch.Alarm(
            self,
            f"Stale-{job}",
            alarm_description=(
                f"{job} data is stale: a location's last success is older than {seconds} s "
                "(two schedule periods plus the job's deadline), or the service stopped "
                "publishing the metric. Run `fluxion-etl freshness` and see docs/deploy/aws.md"
            ),
            metric=cloudwatch.Metric(
                namespace=METRIC_NAMESPACE,
                metric_name=LAST_SUCCESS_AGE_METRIC,
                dimensions_map={"Job": job},
                period=PERIOD,
                statistic="Maximum",
            ),
            threshold=seconds,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms[f"Stale-{job}"] = alarm
