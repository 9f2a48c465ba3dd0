"""The synthesized template of the example environment (deploy/aws/cdk.json): one synthesis for
the whole module (jsii is slow to start)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cdk_support import synthesize

from fluxion_etl.domain.states import Job

pytestmark = pytest.mark.slow

CARACAS = "America/Caracas"
CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
DATABASE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fluxion/database-url-AbCdEf"


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any], Path]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    template, as_dict = synthesize(outdir)
    return template, as_dict, outdir


@pytest.fixture(scope="module")
def template(synthesized: tuple[Any, dict[str, Any], Path]) -> Any:
    return synthesized[0]


@pytest.fixture(scope="module")
def resources(synthesized: tuple[Any, dict[str, Any], Path]) -> dict[str, Any]:
    return dict(synthesized[1]["Resources"])


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def _only(resources: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    (found,) = _of_type(resources, kind).items()
    return found


def _ref_name(value: dict[str, Any]) -> str:
    return str(value.get("Ref") or value["Fn::GetAtt"][0])


# --- schedules ---------------------------------------------------------------------------------


def test_one_schedule_per_product_schedule_with_cron_zone_and_state(
    resources: dict[str, Any],
) -> None:
    schedules = {
        r["Properties"]["Name"]: r["Properties"]
        for r in _of_type(resources, "AWS::Scheduler::Schedule").values()
    }
    assert {
        n: (p["ScheduleExpression"], p["ScheduleExpressionTimezone"], p["State"])
        for n, p in schedules.items()
    } == {
        "inventory": ("cron(0,30 * * * ? *)", CARACAS, "ENABLED"),
        "sales": ("cron(5,35 * * * ? *)", CARACAS, "ENABLED"),
        "sales-reconcile": ("cron(0 3 * * ? *)", CARACAS, "ENABLED"),
    }
    assert all(p["FlexibleTimeWindow"] == {"Mode": "OFF"} for p in schedules.values())


def test_schedules_have_the_scheduler_retry_policy_and_dead_letter_queue(
    resources: dict[str, Any],
) -> None:
    queues = _of_type(resources, "AWS::SQS::Queue")
    for schedule in _of_type(resources, "AWS::Scheduler::Schedule").values():
        target = schedule["Properties"]["Target"]
        assert target["RetryPolicy"] == {
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 3600,
        }
        dead_letter = _ref_name(target["DeadLetterConfig"]["Arn"])
        assert dead_letter in queues
        assert dead_letter.startswith("SchedulesDeadLetterQueue")
        assert _ref_name(target["Arn"]) == _only(resources, "AWS::Lambda::Function")[0]


def test_the_scheduler_input_carries_the_schedule_and_its_scheduled_time(
    resources: dict[str, Any],
) -> None:
    inputs = {
        r["Properties"]["Name"]: json.loads(r["Properties"]["Target"]["Input"])
        for r in _of_type(resources, "AWS::Scheduler::Schedule").values()
    }
    assert inputs["sales-reconcile"]["schedule"] == "sales-reconcile"
    assert inputs["sales-reconcile"]["job"] == Job.RECONCILE.value
    assert all(i["scheduled_time"] == "<aws.scheduler.scheduled-time>" for i in inputs.values())


def test_the_scheduler_role_may_only_invoke_the_trigger_and_dead_letter(
    resources: dict[str, Any],
) -> None:
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for name, p in _of_type(resources, "AWS::IAM::Policy").items()
        if name.startswith("SchedulesRole")
    ]
    (statements,) = policies
    assert sorted(a for s in statements for a in _list(s["Action"])) == sorted(
        ["lambda:InvokeFunction", "sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    )
    assert "*" not in json.dumps([s["Resource"] for s in statements]).replace(":*", "")


# --- trigger -----------------------------------------------------------------------------------


def test_the_trigger_is_a_python_lambda_with_its_token_by_reference(
    resources: dict[str, Any],
) -> None:
    _, function = _only(resources, "AWS::Lambda::Function")
    properties = function["Properties"]
    assert properties["Runtime"].startswith("python3.")
    assert properties["Handler"] == "handler.handler"
    env = properties["Environment"]["Variables"]
    assert env["FLUXION_SERVICE_URL"] == "https://etl.example.com"
    assert _ref_name(env["FLUXION_TOKEN_SECRET_ARN"]).startswith("SecretsTriggerToken")


def test_the_trigger_retries_asynchronously_then_goes_to_its_on_failure_queue(
    template: Any, resources: dict[str, Any]
) -> None:
    from aws_cdk.assertions import Match

    (queue,) = [
        n for n in _of_type(resources, "AWS::SQS::Queue") if n.startswith("TriggerOnFailure")
    ]
    template.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "MaximumRetryAttempts": 2,
            "MaximumEventAgeInSeconds": 3600,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [queue, "Arn"]}}},
            "FunctionName": {"Ref": Match.string_like_regexp("^TriggerFunction")},
        },
    )
    template.resource_count_is("AWS::Lambda::EventInvokeConfig", 1)


def test_only_the_handler_file_ships_in_the_function(
    synthesized: tuple[Any, dict[str, Any], Path],
) -> None:
    (asset,) = [p for p in synthesized[2].glob("asset.*") if p.is_dir()]
    assert sorted(p.name for p in asset.iterdir()) == ["handler.py"]


# --- service and worker --------------------------------------------------------------------------


def _task_definitions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["Family"]: r["Properties"]
        for r in _of_type(resources, "AWS::ECS::TaskDefinition").values()
    }


def _containers(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["Name"]: c for c in definition["ContainerDefinitions"]}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def test_the_service_serves_in_external_mode_with_the_ecs_launcher(
    resources: dict[str, Any],
) -> None:
    service = _task_definitions(resources)["fluxion-etl-service"]
    containers = _containers(service)
    serve, migrate = containers["serve"], containers["migrate"]
    assert serve["Command"][0] == "serve"
    env = _env(serve)
    assert (env["FLUXION_SCHEDULER"], env["FLUXION_LAUNCHER"]) == ("external", "ecs")
    assert env["FLUXION_ECS_TASK_DEFINITION"] == "fluxion-etl-worker"
    assert env["FLUXION_ECS_CLUSTER"] == "fluxion"
    assert env["FLUXION_ECS_SUBNETS"] == "subnet-0aaaaaaaaaaaaaaa1,subnet-0aaaaaaaaaaaaaaa2"
    assert env["FLUXION_ECS_CONTAINER_NAME"] == "worker"
    # migrations run to completion before the new version serves
    assert migrate["Command"] == ["db", "upgrade"]
    assert migrate["Essential"] is False
    assert serve["DependsOn"] == [{"ContainerName": "migrate", "Condition": "SUCCESS"}]


def test_the_service_is_behind_https_with_a_readyz_health_check(
    resources: dict[str, Any],
) -> None:
    listeners = {
        r["Properties"]["Port"]: r["Properties"]
        for r in _of_type(resources, "AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    _, group = _only(resources, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert group["Properties"]["HealthCheckPath"] == "/readyz"
    assert group["Properties"]["Port"] == 8000
    _, service = _only(resources, "AWS::ECS::Service")
    assert service["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {
        "Enable": True,
        "Rollback": True,
    }


def test_the_worker_runs_fluxion_etl_worker_with_its_log_group_and_roles(
    resources: dict[str, Any],
) -> None:
    worker = _task_definitions(resources)["fluxion-etl-worker"]
    container = _containers(worker)["worker"]
    assert container["Command"][0] == "worker"
    log_group = _ref_name(container["LogConfiguration"]["Options"]["awslogs-group"])
    assert resources[log_group]["Properties"]["RetentionInDays"] == 30
    assert _ref_name(worker["TaskRoleArn"]).startswith("WorkerTaskRole")
    assert _ref_name(worker["ExecutionRoleArn"]).startswith("WorkerExecutionRole")
    assert worker["RequiresCompatibilities"] == ["FARGATE"]


def test_secrets_reach_tasks_as_ecs_secrets(resources: dict[str, Any]) -> None:
    for definition in _task_definitions(resources).values():
        for container in definition["ContainerDefinitions"]:
            assert container["Secrets"] == [
                {"Name": "FLUXION_DATABASE_URL", "ValueFrom": DATABASE_SECRET}
            ]
            assert "FLUXION_DATABASE_URL" not in _env(container)


def test_the_service_may_run_only_the_worker_family_and_pass_only_its_roles(
    resources: dict[str, Any],
) -> None:
    (statements,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for name, p in _of_type(resources, "AWS::IAM::Policy").items()
        if name.startswith("ServiceTaskRole")
    ]
    by_sid = {s["Sid"]: s for s in statements}
    assert set(by_sid) == {"RunWorkerTasks", "WatchWorkerTasks", "PassWorkerRoles"}
    run = by_sid["RunWorkerTasks"]
    assert run["Action"] == "ecs:RunTask"
    assert json.dumps(run["Resource"]).endswith(':task-definition/fluxion-etl-worker:*"]]}')
    assert "ecs:cluster" in run["Condition"]["ArnEquals"]
    passed = by_sid["PassWorkerRoles"]
    assert passed["Action"] == "iam:PassRole"
    assert sorted(_ref_name(r) for r in passed["Resource"]) == sorted(
        [
            _name_starting(resources, "WorkerTaskRole"),
            _name_starting(resources, "WorkerExecutionRole"),
        ]
    )
    assert passed["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert all(s["Resource"] != "*" for s in statements)


# --- monitoring --------------------------------------------------------------------------------


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r["Properties"] for n, r in _of_type(resources, "AWS::CloudWatch::Alarm").items()}


def test_alarms_watch_trigger_errors_the_queues_and_ecs_task_failures(
    resources: dict[str, Any],
) -> None:
    alarms = _alarms(resources)
    metrics = {(a.get("Namespace"), a.get("MetricName")) for a in alarms.values()}
    assert ("AWS/Lambda", "Errors") in metrics
    assert ("AWS/Events", "TriggeredRules") in metrics
    queue_alarms = [
        _ref_name(a["Dimensions"][0]["Value"])
        for a in alarms.values()
        if a.get("MetricName") == "ApproximateNumberOfMessagesVisible"
    ]
    assert sorted(q.split("Queue")[0] for q in queue_alarms) == [
        "SchedulesDeadLetter",
        "TriggerOnFailure",
    ]
    _, rule = _only(resources, "AWS::Events::Rule")
    detail = rule["Properties"]["EventPattern"]["detail"]
    assert detail["lastStatus"] == ["STOPPED"]
    assert "family:fluxion-etl-worker" in detail["group"]


def test_stale_alarms_treat_missing_data_as_breaching(resources: dict[str, Any]) -> None:
    stale = {
        a["Dimensions"][0]["Value"]: a
        for a in _alarms(resources).values()
        if a.get("MetricName") == "LastSuccessAgeSeconds"
    }
    assert set(stale) == {"inventory", "sales"}
    assert all(a["TreatMissingData"] == "breaching" for a in stale.values())
    # two 30-minute periods plus the job's deadline (20 min inventory, 25 min sales)
    assert stale["inventory"]["Threshold"] == 2 * 1800 + 1200
    assert stale["sales"]["Threshold"] == 2 * 1800 + 1500


# --- secrets -----------------------------------------------------------------------------------


def test_no_secret_value_anywhere_in_the_template(
    synthesized: tuple[Any, dict[str, Any], Path],
) -> None:
    text = json.dumps(synthesized[1])
    assert '"SecretString"' not in text  # a literal value (GenerateSecretString is fine)
    assert "postgresql" not in text
    assert "resolve:secretsmanager" not in text  # no dynamic reference that CloudFormation expands
    (token,) = [
        r
        for n, r in synthesized[1]["Resources"].items()
        if n.startswith("SecretsTriggerToken") and r["Type"] == "AWS::SecretsManager::Secret"
    ]
    assert set(token["Properties"]["GenerateSecretString"]) == {
        "ExcludePunctuation",
        "PasswordLength",
    }


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _name_starting(resources: dict[str, Any], prefix: str) -> str:
    (name,) = [
        n for n, r in resources.items() if n.startswith(prefix) and r["Type"] == "AWS::IAM::Role"
    ]
    return name
