"""The fluxion-etl AWS deployment, one construct per concern (composed in ``stack.FluxionStack``):

- ``schedules``: one EventBridge Scheduler schedule per product schedule, with retries and a DLQ;
- ``trigger``: the Lambda function the schedules invoke (its runtime code: ``trigger/handler.py``);
- ``service``: ``fluxion-etl serve`` on ECS Fargate behind an HTTPS load balancer;
- ``worker``: the task definition of ``fluxion-etl worker --run-id ID`` that the service runs;
- ``secrets``: the trigger token and the database URL in Secrets Manager;
- ``monitoring``: alarms on the trigger, the queues, ECS task failures and stale data.
"""
