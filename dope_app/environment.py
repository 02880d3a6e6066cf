"""Settings read from environment variables, at the edge only (the CLI and the container).

The backends' options are config values (`GenerateConfig.pathtrace`); these variables fill them
when the config leaves them unset: `DOPE_MITSUBA_VARIANT` -> `pathtrace.variant`,
`DOPE_PATHTRACE_THREADS` -> `pathtrace.threads`. `OMP_WAIT_POLICY` is set for the trainer.
"""

from __future__ import annotations

import os
from typing import Mapping

from dope_stream.config import GenerateConfig
from dope_stream.errors import DopeError

VARIANT_ENV = "DOPE_MITSUBA_VARIANT"
THREADS_ENV = "DOPE_PATHTRACE_THREADS"
BACKEND_VARIABLES = (VARIANT_ENV, THREADS_ENV)


def threads_from_environment(environ: Mapping[str, str] = os.environ) -> int | None:
    """Thread count from $DOPE_PATHTRACE_THREADS (a positive integer), or None when unset."""
    value = environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise DopeError(f"${THREADS_ENV}='{value}': expected a positive whole number of threads")
    return int(value)


def with_backend_environment(config: GenerateConfig, environ: Mapping[str, str] = os.environ) -> GenerateConfig:
    """`config` with the pathtrace options it leaves unset taken from the environment."""
    options = config.pathtrace
    update = {
        "variant": options.variant or environ.get(VARIANT_ENV) or None,
        "threads": options.threads if options.threads is not None else threads_from_environment(environ),
    }
    if update == options.model_dump():
        return config
    return config.model_copy(update={"pathtrace": options.model_copy(update=update)})


def passive_openmp_wait() -> None:
    """Idle OpenMP threads sleep instead of spinning. A spinning torch thread takes the core that a
    renderer process (or a descheduled sibling thread) needs: on 2 busy cores a training step took
    10.7 s with spinning threads, 5.8 s without. OpenMP reads this when torch loads, so it is set
    before the first torch import (the user's own setting wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
