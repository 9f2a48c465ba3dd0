"""AWS fixtures: moto stands in for ECS (AWS cannot be had in tests); credentials are fake."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_fakes import EcsWorld
from sqlalchemy import Engine

REPO = Path(__file__).resolve().parents[2]
DEPLOY_AWS = REPO / "deploy" / "aws"
REGION = "us-east-1"

# The CDK app's package lives beside app.py, not in src/: make it importable for the CDK tests.
if str(DEPLOY_AWS) not in sys.path:
    sys.path.insert(0, str(DEPLOY_AWS))


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, so nothing here can ever reach a real AWS account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def ecs_world(aws_credentials: None) -> Iterator[EcsWorld]:
    """A moto ECS cluster with the worker task definition, in a VPC with one subnet."""
    import boto3
    from moto import mock_aws
    from moto.moto_api import state_manager

    # moto walks a task towards STOPPED on each describe; here a task runs until it is stopped.
    state_manager.set_transition("ecs::task", {"progression": "manual", "times": 10**6})
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="worker", Description="w", VpcId=vpc)
        ecs = boto3.client("ecs", region_name=REGION)
        ecs.create_cluster(clusterName="fluxion")
        ecs.register_task_definition(
            family="fluxion-worker",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="512",
            memory="1024",
            containerDefinitions=[
                {
                    "name": "worker",
                    "image": "fluxion-etl:test",
                    "essential": True,
                    "cpu": 512,
                    "memory": 1024,
                }
            ],
        )
        yield EcsWorld(ecs, "fluxion", "fluxion-worker", subnet, group["GroupId"])
    state_manager.unset_transition("ecs::task")


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    """SQLite only, where the dialect cannot matter (the shared ``engine`` runs both dialects)."""
    from fluxion_etl.store.db import create_db_engine, upgrade

    eng = create_db_engine(sqlite_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()
