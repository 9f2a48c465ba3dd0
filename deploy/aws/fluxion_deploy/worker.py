"""Worker: the task definition of ``fluxion-etl worker --run-id ID`` (the service's ECS launcher
runs it with the run id as a command override), its log group and its two roles.

The worker needs no AWS API itself: its task role is empty; its execution role pulls the image,
reads the database URL secret and writes its log group.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from fluxion_deploy.common import product_environment, product_secrets

CONTAINER_NAME = "worker"


class Worker(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        family: str,
        image: ecs.ContainerImage,
        vpc: ec2.IVpc,
        database_url: secretsmanager.ISecret,
        klk_base_url: str,
        cpu: int,
        memory_mib: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="fluxion-etl worker task: no AWS permissions needed",
        )
        self.execution_role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="ECS starting a fluxion-etl worker: image, database secret, logs",
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            family=family,
            cpu=cpu,
            memory_limit_mib=memory_mib,
            task_role=self.task_role,
            execution_role=self.execution_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.container = self.task_definition.add_container(
            CONTAINER_NAME,
            container_name=CONTAINER_NAME,
            image=image,
            command=["worker", "--help"],  # the launcher overrides it with --run-id ID
            environment=product_environment(klk_base_url=klk_base_url),
            secrets=product_secrets(database_url),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="run", log_group=self.log_group),
            stop_timeout=None,
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="fluxion-etl workers: out to KLK and the database only",
            allow_all_outbound=True,
        )
