"""The one stack: every construct, wired with keyword-only props; environment inputs come from
``DeploySettings`` (CDK context), schedules from the chain's configuration file."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from fluxion_deploy.monitoring import Monitoring, stale_after_seconds
from fluxion_deploy.schedules import Schedules
from fluxion_deploy.secrets import Secrets
from fluxion_deploy.service import Service
from fluxion_deploy.settings import DeploySettings, DeploySettingsError
from fluxion_deploy.trigger import Trigger
from fluxion_deploy.worker import Worker
from fluxion_etl.domain.schedules import ScheduleDef

ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/(?P<repo>[^:@]+)[:@](?P<tag>.+)$"
)
SCHEDULE_GROUP = "fluxion-etl"
WORKER_FAMILY = "fluxion-etl-worker"


class FluxionStack(Stack):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: DeploySettings,
        schedules: Sequence[ScheduleDef],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        retention = retention_days(settings.log_retention_days)
        vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=settings.vpc_id,
            availability_zones=list(settings.availability_zones),
            private_subnet_ids=list(settings.private_subnet_ids),
            public_subnet_ids=list(settings.public_subnet_ids) or None,
        )
        cluster = self._cluster(vpc, settings.cluster_name)
        image = container_image(self, settings.image)
        secrets = Secrets(self, "Secrets", database_url_secret_arn=settings.database_url_secret_arn)
        worker = Worker(
            self,
            "Worker",
            family=WORKER_FAMILY,
            image=image,
            vpc=vpc,
            database_url=secrets.database_url,
            klk_base_url=settings.klk_base_url,
            cpu=settings.worker_cpu,
            memory_mib=settings.worker_memory_mib,
            log_retention=retention,
        )
        service = Service(
            self,
            "Service",
            cluster=cluster,
            vpc=vpc,
            image=image,
            worker=worker,
            worker_subnet_ids=settings.private_subnet_ids,
            database_url=secrets.database_url,
            klk_base_url=settings.klk_base_url,
            certificate_arn=settings.certificate_arn,
            public=settings.public_load_balancer,
            ingress_cidrs=settings.ingress_cidrs,
            cpu=settings.service_cpu,
            memory_mib=settings.service_memory_mib,
            desired_count=settings.service_desired_count,
            log_retention=retention,
        )
        in_vpc = not settings.public_load_balancer
        trigger = Trigger(
            self,
            "Trigger",
            service_url=f"https://{settings.domain_name}",
            token=secrets.trigger_token,
            retry_attempts=settings.trigger_retry_attempts,
            max_event_age=Duration.seconds(settings.trigger_max_event_age_seconds),
            timeout=Duration.seconds(settings.trigger_timeout_seconds),
            log_retention=retention,
            vpc=vpc if in_vpc else None,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
            if in_vpc
            else None,
        )
        fires = Schedules(
            self,
            "Schedules",
            schedules=schedules,
            function=trigger.function,
            group_name=SCHEDULE_GROUP,
        )
        monitoring = Monitoring(
            self,
            "Monitoring",
            trigger_function=trigger.function,
            queues={
                "TriggerOnFailure": trigger.on_failure_queue,
                "SchedulerDeadLetter": fires.dead_letter_queue,
            },
            cluster_arn=cluster.cluster_arn,
            task_groups=[
                f"family:{WORKER_FAMILY}",
                f"service:{service.service.service_name}",
            ],
            stale_after_seconds=stale_after_seconds(schedules),
            alarm_email=settings.alarm_email,
        )
        self._outputs(service, worker, trigger, secrets, monitoring)

    def _cluster(self, vpc: ec2.IVpc, name: str | None) -> ecs.ICluster:
        if name:
            return ecs.Cluster.from_cluster_attributes(self, "Cluster", cluster_name=name, vpc=vpc)
        return ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )

    def _outputs(
        self,
        service: Service,
        worker: Worker,
        trigger: Trigger,
        secrets: Secrets,
        monitoring: Monitoring,
    ) -> None:
        outputs = {
            "LoadBalancerDns": service.load_balancer.load_balancer_dns_name,
            "ServiceLogGroup": service.log_group.log_group_name,
            "WorkerLogGroup": worker.log_group.log_group_name,
            "TriggerFunction": trigger.function.function_name,
            "TriggerLogGroup": trigger.log_group.log_group_name,
            "TriggerTokenSecret": secrets.trigger_token.secret_arn,
            "ScheduleGroup": SCHEDULE_GROUP,
            "AlarmTopic": monitoring.topic.topic_arn,
            "TaskFailuresQueue": monitoring.task_failures.queue_url,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)


RETENTION = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
}


def retention_days(days: int) -> logs.RetentionDays:
    if days not in RETENTION:
        raise DeploySettingsError(
            f"logRetentionDays must be one of {sorted(RETENTION)}, not {days}"
        )
    return logs.RetentionDays[RETENTION[days]]


def container_image(scope: Construct, uri: str) -> ecs.ContainerImage:
    """An ECR image gets pull permission on its repository only; any other registry is public."""
    match = ECR_IMAGE.match(uri)
    if match is None:
        return ecs.ContainerImage.from_registry(uri)
    repository = ecr.Repository.from_repository_name(scope, "ImageRepository", match["repo"])
    return ecs.ContainerImage.from_ecr_repository(repository, match["tag"])
