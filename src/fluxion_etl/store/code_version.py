"""What release of the code wrote a row: a hash of the source of the modules that decide it."""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from importlib.metadata import version


@cache
def source_version(modules: tuple[str, ...]) -> str:
    """A hash of the source of ``modules`` (dotted names), the same in every process that runs
    the same code: a release that decodes or stores differently gets another one."""
    digest = hashlib.blake2b(digest_size=16)
    for name in modules:
        spec = importlib.util.find_spec(name)
        source = None
        if spec is not None and spec.loader is not None:
            source = getattr(spec.loader, "get_source", lambda _name: None)(name)
        # Without its source (bytecode only), the installed release stands for the code.
        digest.update((source or f"{name} {version('fluxion-etl')}").encode())
    return digest.hexdigest()
