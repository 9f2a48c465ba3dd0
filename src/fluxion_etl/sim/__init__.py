"""The KLK simulator (SPEC §5): a deterministic chain served over KLK's HTTP API, with faults.

    world = SimWorld(locations=20, skus=4000, lines_per_day=2000, seed=1, clock=clock)
    with running_simulator(world, FaultPlan("sales@tienda_03:http_503")) as url:
        ...                                   # point the KLK client at url
    world.truth_sales("tienda_01", day)       # what a correct load holds

Modules: world (the façade), topology (locations, warehouses), articles and stock (catalogue),
sales (a day of invoices), truth, faults, queries/payloads (KLK's request and response shapes),
app and control (the ASGI app and its ``/_sim`` routes), server (threads and processes).
"""

from __future__ import annotations

from fluxion_etl.sim.faults import Fault, FaultKind, FaultPlan, parse_faults
from fluxion_etl.sim.world import SalesFilter, SimWorld

__all__ = ["Fault", "FaultKind", "FaultPlan", "SalesFilter", "SimWorld", "parse_faults"]
