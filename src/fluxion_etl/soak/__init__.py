"""The fault-injection soak: the real service under faults, then proof nothing was lost,
duplicated or left stuck (docs/RELIABILITY.md).

    python -m fluxion_etl.soak --mode short --seed 7      (also: fluxion-etl soak ...)

Modules, in the order a soak uses them:

    modes        the short and long modes and their simulated timeline
    plan         the fault schedule drawn from the seed (KLK faults and actions)
    cluster      the soak's own PostgreSQL cluster (initdb), its restart and DB-side faults
    procs        the simulator, the two ``serve`` processes and their workers
    stack        all of the above brought up on one simulated clock, and torn down
    chaos        carrying out the actions (kill -9, restarts, failed commits, trigger bursts)
    triggers     the service's HTTP trigger API, and bursts of duplicate deliveries
    truth        the simulator's truth and fault counters
    check_data   invariants on sales, voids, totals, inventory, history and coverage
    check_ledger invariants on runs, leases, fires, triggers, alerts and injected faults
    report       the printed summary
    runner       the steps of one soak, start to verdict
"""
