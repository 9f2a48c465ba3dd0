"""Shapes shared by the AWS tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EcsWorld:
    client: Any
    cluster: str
    family: str
    subnet: str
    security_group: str
