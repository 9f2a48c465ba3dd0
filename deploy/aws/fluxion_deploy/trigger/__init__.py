"""Trigger: the Python Lambda function EventBridge Scheduler invokes (runtime code: ``handler.py``).

The Scheduler invokes it asynchronously, so the function's own errors are retried by Lambda's
asynchronous invoke settings (``MaximumRetryAttempts``, ``MaximumEventAgeInSeconds``), then sent to
the on-failure destination queue, which the monitoring alarms on.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

RUNTIME_DIR = Path(__file__).parent
HANDLER_FILE = "handler.py"


class Trigger(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        service_url: str,
        token: secretsmanager.ISecret,
        retry_attempts: int,
        max_event_age: Duration,
        timeout: Duration,
        log_retention: logs.RetentionDays,
        vpc: ec2.IVpc | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.on_failure_queue = sqs.Queue(
            self,
            "OnFailureQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            retention_period=Duration.days(14),
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description="fluxion-etl trigger: a scheduler fire -> POST /api/etl/sync[...]",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            # Only the runtime file ships; the construct code beside it stays out of the bundle.
            code=lambda_.Code.from_asset(str(RUNTIME_DIR), exclude=["*", f"!{HANDLER_FILE}"]),
            memory_size=128,
            timeout=timeout,
            log_group=self.log_group,
            environment={
                "FLUXION_SERVICE_URL": service_url,
                "FLUXION_TOKEN_SECRET_ARN": token.secret_arn,
                "FLUXION_TRIGGER_TIMEOUT": str(max(1, timeout.to_seconds() - 5)),
            },
            vpc=vpc,
            vpc_subnets=vpc_subnets,
        )
        token.grant_read(self.function)
        self.function.configure_async_invoke(
            retry_attempts=retry_attempts,
            max_event_age=max_event_age,
            on_failure=destinations.SqsDestination(self.on_failure_queue),
        )
