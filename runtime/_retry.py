"""When a failed node run is tried again, and after how long (DESIGN §5.3).

Pure: the wait before each attempt follows from the node's settings and from the
attempt's identity alone. Jitter comes from a hash of the execution id, node key, run
index and attempt, so a restored execution computes the same waits again.
"""

from __future__ import annotations

import hashlib

from ._model import RetrySettings
from ._records import ErrorInfo

# Backoffs up to this long are waited in memory (the execution stays running); longer
# ones are durable timers: the execution may be saved and leave memory meanwhile.
DURABLE_BACKOFF = 2.0

# Errors a second attempt cannot mend: the workflow or the action is wrong.
NEVER_RETRIED = frozenset({"expression_error", "invalid_params", "invalid_output", "invalid_port"})


def retryable(settings: RetrySettings, error: ErrorInfo) -> bool:
    """Whether ``settings.retry_on`` admits ``error`` (every error when it is empty)."""
    if error.code in NEVER_RETRIED:
        return False
    if not settings.retry_on:
        return True
    if error.code in settings.retry_on:
        return True
    details = error.details if isinstance(error.details, dict) else {}
    names = details.get("exception_types") or ()
    return any(
        name in settings.retry_on or name.rpartition(".")[2] in settings.retry_on for name in names
    )


def backoff(
    settings: RetrySettings, *, execution_id: str, node_key: str, run_index: int, attempt: int
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
    delay = settings.delay
    if settings.backoff == "exponential":
        delay *= 2.0 ** min(attempt - 1, 64)
    if settings.max_delay is not None:
        delay = min(delay, settings.max_delay)
    if settings.jitter:
        seed = f"{execution_id}:{node_key}:{run_index}:{attempt}".encode()
        fraction = int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest()) / 2.0**64
        delay *= 1.0 - settings.jitter * fraction
    return delay


def next_wait(
    settings: RetrySettings | None,
    error: ErrorInfo,
    *,
    execution_id: str,
    node_key: str,
    run_index: int,
    attempt: int,
) -> float | None:
    """Seconds until the next attempt, or ``None`` if the run is not tried again."""
    if settings is None or attempt >= settings.max_attempts or not retryable(settings, error):
        return None
    return backoff(
        settings, execution_id=execution_id, node_key=node_key, run_index=run_index, attempt=attempt
    )
