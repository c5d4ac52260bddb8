"""The ``prana`` command against a daemon: its HTTP API instead of the database.

With ``--url URL`` (or ``$PRANA_URL``) the commands that read or steer executions
(``list``, ``show``, ``status``, ``logs``, ``resume``, ``cancel``, ``pause``,
``retry``, ``rerun``), and ``run`` and ``validate`` (a workflow file runs on the
daemon, with its actions: :mod:`._cli_serve`), send their request to ``prana serve``
at that address, with ``$PRANA_TOKEN`` as the API token when it needs one. The
answers are shown as the local commands show them. Plain ``urllib``: the command is
synchronous and needs no HTTP library of its own.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import attrs
import cattrs

from prana import events
from prana._errors import (
    ExecutionNotFound,
    InvalidTransition,
    PranaError,
    Problem,
    WorkflowValidationError,
)
from prana._records import Execution

# The commands that go through a daemon when given its address.
REMOTE_COMMANDS = frozenset(
    [
        "list",
        "show",
        "explain",
        "status",
        "logs",
        "resume",
        "cancel",
        "pause",
        "retry",
        "rerun",
        "run",
        "validate",
    ]
)

_EXECUTION_FIELDS = {field.name for field in attrs.fields(Execution)}
_converter = cattrs.Converter()


def event_from(data: dict[str, Any]) -> events.Event | None:
    """A :mod:`prana.events` event from what the API streams for one (``to_dict``);
    ``None`` for a kind this version does not know."""
    kind = getattr(events, str(data.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, events.Event)):
        return None
    names = {field.name for field in attrs.fields(kind)}
    return _converter.structure({k: v for k, v in data.items() if k in names}, kind)


def execution_from(data: dict[str, Any]) -> Execution:
    """An :class:`Execution` from what the API returns for one (``to_dict``)."""
    return _converter.structure(
        {key: value for key, value in data.items() if key in _EXECUTION_FIELDS}, Execution
    )


class Remote:
    """A daemon's API at ``url``."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 330.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def get(self, path: str, **query: Any) -> Any:
        chosen = {name: value for name, value in query.items() if value is not None}
        return self._call("GET", f"{path}?{urlencode(chosen)}" if chosen else path)

    def stream(self, path: str, last_event_id: int | None = None) -> Iterator[tuple[str, Any]]:
        """The server-sent events at ``path`` (after event ``last_event_id``, if the
        daemon still has them), as (name, data), until the server ends the stream."""
        request = urllib.request.Request(self.url + path)
        request.add_header("Accept", "text/event-stream")
        if last_event_id is not None:
            request.add_header("Last-Event-ID", str(last_event_id))
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            reply = urllib.request.urlopen(request, timeout=None)
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise PranaError(f"cannot reach the daemon at {self.url} ({exc})") from None
        with reply:
            name, data = "", ""
            try:
                for raw in reply:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif not line and name:
                        yield name, json.loads(data)
                        name, data = "", ""
            except (OSError, http.client.HTTPException) as exc:
                raise PranaError(
                    f"the daemon at {self.url} broke off the stream of events ({exc!r}); "
                    "the execution carries on where it is kept: follow it again with "
                    "'prana logs ID'"
                ) from None

    def post(self, path: str, body: Any = None) -> Any:
        return self._call("POST", path, body)

    def execution(self, path: str, body: Any = None) -> Execution:
        """POST ``body`` to ``path``; the execution it answers with."""
        return execution_from(self.post(path, body))

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PranaError(
                f"cannot reach the daemon at {self.url} ({reason}); is 'prana serve' "
                "running there? (--url, $PRANA_URL)"
            ) from None


def _refusal(exc: urllib.error.HTTPError) -> PranaError:
    """The error a daemon's refusal stands for, with its words."""
    try:
        problem = json.loads(exc.read())
        detail = problem.get("detail") or problem.get("title") or str(exc)
    except (ValueError, AttributeError):
        problem, detail = {}, str(exc)
    if exc.code == 422 and problem.get("problems"):
        found = [Problem(path=p.get("path", ""), message=p["message"]) for p in problem["problems"]]
        return WorkflowValidationError(found)
    if exc.code == 401:
        return PranaError(f"{detail} (the command sends $PRANA_TOKEN)")
    if exc.code == 404:
        return ExecutionNotFound(detail)
    if exc.code == 409:
        return InvalidTransition(detail)
    return PranaError(detail)


def path_of(execution_id: str, action: str | None = None) -> str:
    base = f"/api/executions/{quote(execution_id, safe='')}"
    return f"{base}/{action}" if action else base
