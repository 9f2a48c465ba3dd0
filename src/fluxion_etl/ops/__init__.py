"""Operating the service: gaps and their recovery, alerts and their channels, metrics.

    ops.gaps      list_gaps(conn, config, *, now, days=14, location_id=None) -> list[LocationGap]
    ops.recover   recover_gaps(engine, *, config, settings, clock, ...) -> list[RecoveryRun]
                  auto_recover(engine, *, config, settings, clock, launch, ...) -> list[RecoveryRun]
    ops.alerts    open_alerts(conn, *, location_id=None) -> list[AlertRow]
                  AlertEvaluator(...).evaluate() -> Evaluation
    ops.channels  channels_from_config(alerts, env) -> list[Channel]; SMTP, webhook, dead-man ping
    ops.metrics   OpsMetrics: a Prometheus registry per app, read from the database at scrape time

Each module's docstring gives its contract; the CLI (``gaps``, ``alerts``), the API
(``/api/etl/gaps``, ``/metrics``), the control centre and the service's maintenance loop all call
these same functions.
"""
