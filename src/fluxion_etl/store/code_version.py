"""What release of the code wrote a row: a hash of the source of the modules that decide it."""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from importlib.metadata import version

# The modules that decide what any KLK payload's bytes end up as in the database; each kind of
# row adds its own loader's modules.
DECODING_MODULES = (
    "fluxion_etl.klk.decode",
    "fluxion_etl.klk.wire",
    "fluxion_etl.klk.limits",
    "fluxion_etl.domain.records",
    "fluxion_etl.store.bulk",
    "fluxion_etl.store.schema",
    "fluxion_etl.store.types",
)


@cache
def source_version(modules: tuple[str, ...]) -> str:
    """A hash of the source of ``modules`` (dotted names) and of the version of msgspec (which
    reads the numbers): the same in every process that runs the same code, another one for a
    release that changes any of them. Callers compute it when imported, so a process keeps the
    version of the code it runs even if the files are replaced under it."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"msgspec {version('msgspec')}\n".encode())
    for name in modules:
        spec = importlib.util.find_spec(name)
        source = None
        if spec is not None and spec.loader is not None:
            source = getattr(spec.loader, "get_source", lambda _name: None)(name)
        # Without its source (bytecode only), the installed release stands for the code.
        digest.update((source or f"{name} {version('fluxion-etl')}").encode())
    return digest.hexdigest()
