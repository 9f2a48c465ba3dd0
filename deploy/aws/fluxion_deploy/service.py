"""Service: ``fluxion-etl serve`` on ECS Fargate behind an HTTPS application load balancer.

It runs with ``FLUXION_SCHEDULER=external`` (EventBridge fires the schedules through the API) and
``FLUXION_LAUNCHER=ecs`` (each run is a worker task). Database migrations run in a ``migrate``
container of the same task that must exit 0 before ``serve`` starts (``fluxion-etl db upgrade`` is
serialised by an advisory lock, so two tasks starting together are safe); the load balancer sends
traffic only once ``/readyz`` answers, so a new version never serves an old schema.

The service may start worker tasks of exactly one family in exactly one cluster, pass exactly the
worker's two roles, and describe tasks of that cluster: nothing wider.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from fluxion_deploy.common import SERVICE_PORT, product_environment, product_secrets
from fluxion_deploy.worker import CONTAINER_NAME as WORKER_CONTAINER
from fluxion_deploy.worker import Worker

HEALTH_PATH = "/readyz"


class Service(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.ICluster,
        vpc: ec2.IVpc,
        image: ecs.ContainerImage,
        worker: Worker,
        worker_subnet_ids: Sequence[str],
        database_url: secretsmanager.ISecret,
        klk_base_url: str,
        certificate_arn: str,
        public: bool,
        ingress_cidrs: Sequence[str],
        cpu: int,
        memory_mib: int,
        desired_count: int,
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
            description="fluxion-etl serve: run and watch worker tasks, nothing else",
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            family="fluxion-etl-service",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            task_role=self.task_role,
        )
        environment = product_environment(
            klk_base_url=klk_base_url,
            extra={
                "FLUXION_SCHEDULER": "external",
                "FLUXION_LAUNCHER": "ecs",
                "FLUXION_ECS_CLUSTER": cluster.cluster_name,
                "FLUXION_ECS_TASK_DEFINITION": worker.task_definition.family,
                "FLUXION_ECS_CONTAINER_NAME": WORKER_CONTAINER,
                "FLUXION_ECS_SUBNETS": ",".join(worker_subnet_ids),
                "FLUXION_ECS_SECURITY_GROUPS": worker.security_group.security_group_id,
            },
        )
        self._containers(image, environment, product_secrets(database_url))
        self._allow_running_workers(cluster, worker)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="fluxion-etl serve", allow_all_outbound=True
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.security_group],
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            health_check_grace_period=Duration.seconds(120),
        )
        self.load_balancer = self._load_balancer(vpc, public, ingress_cidrs, certificate_arn)

    def _containers(
        self, image: ecs.ContainerImage, environment: dict[str, str], secrets: dict[str, ecs.Secret]
    ) -> None:
        logging = ecs.LogDrivers.aws_logs(stream_prefix="service", log_group=self.log_group)
        migrate = self.task_definition.add_container(
            "migrate",
            container_name="migrate",
            image=image,
            command=["db", "upgrade"],
            essential=False,
            environment=environment,
            secrets=secrets,
            logging=logging,
        )
        self.container = self.task_definition.add_container(
            "serve",
            container_name="serve",
            image=image,
            command=["serve", "--host", "0.0.0.0", "--port", str(SERVICE_PORT)],  # noqa: S104
            environment=environment,
            secrets=secrets,
            logging=logging,
            port_mappings=[ecs.PortMapping(container_port=SERVICE_PORT)],
            stop_timeout=Duration.seconds(60),
        )
        self.container.add_container_dependencies(
            ecs.ContainerDependency(
                container=migrate, condition=ecs.ContainerDependencyCondition.SUCCESS
            )
        )

    def _allow_running_workers(self, cluster: ecs.ICluster, worker: Worker) -> None:
        stack = Stack.of(self)
        family_revisions = stack.format_arn(
            service="ecs",
            resource="task-definition",
            resource_name=f"{worker.task_definition.family}:*",
        )
        cluster_tasks = stack.format_arn(
            service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*"
        )
        in_cluster = {"ArnEquals": {"ecs:cluster": cluster.cluster_arn}}
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="RunWorkerTasks",
                actions=["ecs:RunTask"],
                resources=[family_revisions],
                conditions=in_cluster,
            )
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="WatchWorkerTasks",
                actions=["ecs:DescribeTasks"],
                resources=[cluster_tasks],
                conditions=in_cluster,
            )
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="PassWorkerRoles",
                actions=["iam:PassRole"],
                resources=[worker.task_role.role_arn, worker.execution_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            )
        )

    def _load_balancer(
        self, vpc: ec2.IVpc, public: bool, ingress_cidrs: Sequence[str], certificate_arn: str
    ) -> elbv2.ApplicationLoadBalancer:
        group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=vpc,
            description="fluxion-etl HTTPS",
            allow_all_outbound=False,
        )
        for cidr in ingress_cidrs:
            group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "HTTPS")
            group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(80), "HTTP, redirected")
        subnet_type = ec2.SubnetType.PUBLIC if public else ec2.SubnetType.PRIVATE_WITH_EGRESS
        alb = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=public,
            vpc_subnets=ec2.SubnetSelection(subnet_type=subnet_type),
            security_group=group,
            drop_invalid_header_fields=True,
        )
        https = alb.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_arn(certificate_arn)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=False,
        )
        https.add_targets(
            "Serve",
            port=SERVICE_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[
                self.service.load_balancer_target(
                    container_name="serve", container_port=SERVICE_PORT
                )
            ],
            health_check=elbv2.HealthCheck(
                path=HEALTH_PATH, healthy_http_codes="200", interval=Duration.seconds(15)
            ),
            deregistration_delay=Duration.seconds(30),
        )
        alb.add_listener(
            "HttpRedirect",
            port=80,
            protocol=elbv2.ApplicationProtocol.HTTP,
            open=False,
            default_action=elbv2.ListenerAction.redirect(
                protocol="HTTPS", port="443", permanent=True
            ),
        )
        return alb
