"""Reading requests the API's way: tokens, bodies within their limit, JSON, query
options, signatures; and answering with JSON. Each refusal is an
:class:`HTTPProblem` that says what to send instead."""

from __future__ import annotations

import datetime
import difflib
import hashlib
import hmac
import math
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ._problems import HTTPProblem

JSON = "application/json"


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def authorize(request: Request, tokens: Sequence[bytes]) -> None:
    """Refuse (401) a request without ``Authorization: Bearer`` and one of ``tokens``
    (when there are any)."""
    if not tokens:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and any(
        hmac.compare_digest(given.strip().encode(), token) for token in tokens
    ):
        return
    raise HTTPProblem(
        401,
        "Unauthorized",
        "this API needs a token: send 'Authorization: Bearer TOKEN' with one of the "
        "daemon's tokens (prana serve --token-file)",
    )


def refuse_unknown(names: Iterable[str], known: Sequence[str], title: str, what: str) -> None:
    """Refuse (400) the first of ``names`` that is not ``known``: a misspelt filter
    must not widen what a request selects to everything."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HTTPProblem(
                400, title, f"unknown {what} {name!r}{hint}; the {what}s are {', '.join(known)}"
            )


# The fields of a body that hold text, when a body may hold them.
_TEXT_FIELDS = ("reason", "node", "from_node", "workflow")


def body_fields(data: Any, known: Sequence[str], title: str, not_an_object: str) -> dict[str, Any]:
    """A body (JSON) that is nothing (``{}``) or an object of ``known`` fields, those
    that hold text as text; refused (400, ``title``) otherwise, with ``not_an_object``
    when it is not an object: a misspelt field is refused, not dropped."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HTTPProblem(400, title, not_an_object)
    refuse_unknown(data, known, title, "field")
    for name in _TEXT_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise HTTPProblem(400, title, f"{name} must be a string")
    return data


# What a control's body may hold (the others: a reason).
CONTROL_FIELDS = {"rerun": ("from_node", "input"), "resume": ("data", "node")}


def control_options(action: str, data: Any) -> dict[str, Any]:
    """A control's body: the fields ``action`` takes (a resume without its data would
    carry the execution on with none)."""
    known = CONTROL_FIELDS.get(action, ("reason",))
    shape = f"the body of {action} is an object of {', '.join(known)}, or empty"
    return body_fields(data, known, "Invalid body", shape)


# What a bulk control's body may hold: which executions, and why.
BULK_FIELDS = ("status", "workflow", "limit", "reason")


def bulk_filter(data: Any, statuses: Sequence[str], most: int) -> dict[str, Any]:
    """A bulk control's body (JSON): an object of :data:`BULK_FIELDS`, or nothing
    (every execution, at most ``most``)."""
    shape = (
        'the body must be an object such as {"status": "failed", "workflow": "orders"}, '
        "or empty for every execution"
    )
    chosen = body_fields(data, BULK_FIELDS, "Invalid filter", shape)
    status = chosen.get("status")
    if status is not None and status not in statuses:
        raise HTTPProblem(400, "Invalid filter", f"status must be one of {', '.join(statuses)}")
    limit = chosen.get("limit", most)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise HTTPProblem(400, "Invalid filter", f"limit must be a whole number from 1 to {most}")
    return chosen


class BodyReader:
    """Reads request bodies of at most ``max_body`` bytes (413 past that)."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body

    async def raw(self, request: Request) -> bytes:
        """The body as it came."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    async def json(self, request: Request) -> Any:
        """The body as JSON (``None`` if empty); 400 if it is not JSON."""
        return parse_json(await self.raw(request))

    def _too_large(self) -> HTTPProblem:
        return HTTPProblem(
            413,
            "Body too large",
            f"the body is larger than {self.max_body} bytes, the most this daemon takes "
            "(prana serve --max-body)",
        )


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON (``None`` if empty); 400 if it is not JSON."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPProblem(400, "Invalid JSON", f"the body is not JSON: {exc}") from None


def webhook_body(raw: bytes, content_type: str) -> Any:
    """A webhook's body as its workflow sees it (``trigger.body``), by its
    ``Content-Type``: JSON (the default) as data; form fields
    (``application/x-www-form-urlencoded``) as an object, a field sent several times
    as the list of its values; text (``text/*``, XML) as a string; nothing as
    ``null``. 415 for anything else (a file, a multipart form)."""
    kind, _, options = content_type.partition(";")
    kind = kind.strip().lower()
    if kind in ("", "application/json") or kind.endswith("+json"):
        return parse_json(raw)
    form = kind == "application/x-www-form-urlencoded"
    if not (form or kind.startswith("text/") or kind == "application/xml" or kind.endswith("+xml")):
        raise HTTPProblem(
            415,
            "Unsupported body",
            f"a webhook takes JSON, form fields (application/x-www-form-urlencoded) or text, "
            f"not {kind}; send one of those, or a reference to where the rest is kept",
        )
    if not raw:
        return None
    charset = "utf-8"
    for option in options.split(";"):
        name, _, value = option.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        text = raw.decode(charset)
    except (LookupError, UnicodeDecodeError):
        raise HTTPProblem(
            400, "Invalid body", f"the body is not text in {charset}; send it in UTF-8"
        ) from None
    if form:
        if text.lstrip()[:1] in ("{", "["):
            # JSON sent as a form (curl -d's default type): a form's encoder would
            # have written %7B, %5B.
            return parse_json(raw)
        return fields_of(urllib.parse.parse_qsl(text, keep_blank_values=True))
    return text


def fields_of(pairs: Iterable[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form or query fields as an object: a field given several times holds the list
    of its values, in order."""
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}


def definition_of(body: Any) -> dict[str, Any]:
    """A workflow's definition sent as a body (to serve or validate it)."""
    if not isinstance(body, dict):
        raise HTTPProblem(
            400,
            "Invalid workflow",
            "send the workflow's definition as a JSON object (id, version, nodes, connections)",
        )
    return body


def definition_and_input(body: Any) -> tuple[dict[str, Any], Any]:
    """The definition and input of a body that runs a workflow sent whole; one that
    names a workflow instead is told where served workflows are started."""
    if isinstance(body, dict) and isinstance(body.get("workflow"), dict):
        return body["workflow"], body.get("input")
    named = body.get("workflow", body.get("workflow_id")) if isinstance(body, dict) else None
    served = (
        f"to start the served workflow {named!r}, POST its input to "
        f"/api/workflows/{named}/executions; "
        if isinstance(named, str)
        else ""
    )
    raise HTTPProblem(
        400,
        "Invalid body",
        f'{served}this route runs a definition sent whole: send {{"workflow": DEFINITION, '
        '"input": INPUT}, the definition as a JSON object (id, version, nodes, connections)',
    )


def sign(key: bytes, message: bytes) -> str:
    """The HMAC-SHA256 of ``message`` with ``key``, in hex."""
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_signed(request: Request, body: bytes, secret: bytes) -> None:
    """Refuse (401) a webhook's request whose ``X-Prana-Signature`` is not the
    HMAC-SHA256 of its ``body`` with the webhook's ``secret``."""
    given = request.headers.get("x-prana-signature", "")
    if not hmac.compare_digest(given.encode(), f"sha256={sign(secret, body)}".encode()):
        raise HTTPProblem(
            401,
            "Unsigned webhook",
            "this webhook takes signed requests only: send X-Prana-Signature: "
            "sha256=HEX, the HMAC-SHA256 of the body with the webhook's secret",
        )


def prefer_wait(request: Request, most: float) -> float:
    """``Prefer: wait=SECONDS`` (RFC 7240), at most ``most``; 0 when not given. A
    preference that cannot be read is ignored, as the RFC has it."""
    for preference in request.headers.get("prefer", "").split(","):
        name, _, value = preference.partition("=")
        if name.strip().lower() == "wait":
            try:
                return min(max(float(value.strip().strip('"')), 0.0), most)
            except ValueError:
                return 0.0
    return 0.0


def wait_option(request: Request, most: float) -> float:
    """``?wait=SECONDS``: from 0 to ``most`` (0 when not given)."""
    text = request.query_params.get("wait")
    if text is None:
        return 0.0
    try:
        wait = float(text)
    except ValueError:
        wait = math.nan
    if not 0 <= wait <= most:
        raise HTTPProblem(
            400,
            "Invalid query",
            f"wait is how many seconds to wait for the execution to stop: a number from 0 "
            f"to {most:g}, not {text!r}",
        )
    return wait


def int_option(request: Request, name: str, default: int, least: int, most: int) -> int:
    """``?NAME=N``: a whole number from ``least`` to ``most`` (``default`` when not
    given)."""
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.removeprefix("-").isdigit() or not least <= int(text) <= most:
        raise HTTPProblem(
            400, "Invalid query", f"{name} must be a whole number from {least} to {most}"
        )
    return int(text)


def time_option(request: Request, name: str) -> float | None:
    """``?NAME=``: a moment, as seconds since the epoch or an ISO 8601 date and time
    (UTC unless it says otherwise)."""
    return moment_of(name, request.query_params.get(name))


def moment_of(name: str, text: str | None) -> float | None:
    """``text`` (the value of ``name``) as a moment (see :func:`time_option`)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise HTTPProblem(
            400,
            "Invalid query",
            f"{name} must be a moment: seconds since the epoch, or an ISO 8601 date and "
            f"time like 2026-12-06T18:00:00Z, not {text!r}",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def cursor_of(started_at: float, execution_id: str) -> str:
    """The cursor of the page after the execution that started at ``started_at``."""
    return f"{started_at!r}~{execution_id}"


def cursor_option(request: Request) -> tuple[float, str] | None:
    """``?cursor=``, as :func:`cursor_of` made it."""
    return cursor_from(request.query_params.get("cursor"))


def cursor_from(text: str | None) -> tuple[float, str] | None:
    """A cursor :func:`cursor_of` made, read back."""
    if text is None:
        return None
    started, _, execution_id = text.partition("~")
    try:
        return float(started), execution_id
    except ValueError:
        raise HTTPProblem(
            400, "Invalid query", "cursor must be a next_cursor of an earlier answer"
        ) from None
