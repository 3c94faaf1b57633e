"""The reports HTTP API under /api/v1: notices, acknowledgement reports, summaries, audit check.

Every endpoint but /api/v1/openapi.json needs `Authorization: Bearer <token>` (tokens come from
`herald token create`). Compliance officers and admins read every notice; a CAM reads only the
notices they authored. A token reads with the role it was created with (what both it and its
person's current role allow) until it expires. Errors are JSON objects `{"error": code, "message": text}`.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from bot import api_surveys
from bot.common.clock import Clock
from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.core.compliance.api_tokens import TOKEN_PREFIX, TokenExpired, authenticate
from bot.core.compliance.verify import parse_anchor, verify_chain
from bot.core.compliance.reports import (
    FORMATS,
    can_read_notice,
    export_summary,
    load_notice,
    notice_document,
    notice_revisions,
    notice_summary,
    parse_window,
    readable_notices,
    record_report_delivered,
    report_chunks,
    report_scope,
    scoped_recipient_counts,
    summary_csv,
)
from bot.topics.importance import Importance
from storage.models import MAX_ROW_ID, Notice, Staff, StaffRole

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
AUDITORS = {StaffRole.COMPLIANCE.value, StaffRole.ADMIN.value}
NO_STORE = {"Cache-Control": "no-store"}
LIST_FIELDS = ("id", "title", "topic", "importance", "status", "audience", "author", "created_at", "sent_at",
               "deadline")

Handler = Callable[[web.Request, Staff], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status,
                             headers={**NO_STORE, **(headers or {})})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


def _unauthorized(message: str, *, invalid_token: bool = False) -> ApiError:
    challenge = 'Bearer realm="herald", error="invalid_token"' if invalid_token else 'Bearer realm="herald"'
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": challenge})


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def _int_param(request: web.Request, name: str, *, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or not raw.strip().isascii() or len(raw.strip()) > 12:
        raise _bad_request(f"{name} must be a whole number")
    value = int(raw.strip())
    if value < low or (high is not None and value > high):
        raise _bad_request(f"{name} must be between {low} and {high}" if high else f"{name} must be at least {low}")
    return value


_TOKEN_PARAMS = {"token", "access_token", "api_token", "api_key", "apikey", "key", "bearer", "auth",
                 "authorization"}


def _token_in_query(request: web.Request) -> bool:
    """Whether the query string carries what looks like an API token (`?access_token=hrld_...`, as
    some tools send one): such a request is told how to send it instead, not just that a token is
    missing."""
    return any(key.lower() in _TOKEN_PARAMS or value.strip().startswith(TOKEN_PREFIX)
               for key, value in request.query.items())


# A date and time followed by a space and an offset: an unencoded "+01:00" in a query string, whose
# "+" the URL decoding turned into a space (`curl '...?since=2026-01-05T09:00+01:00'`).
_PLUS_AS_SPACE = re.compile(r"^(\d{4}-?\d{2}-?\d{2}[Tt ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?) (\d{2}(?::?\d{2})?)$")


def _query_time(raw: str) -> str:
    """A time from the query string, with the offset's "+" put back where it was decoded as a space."""
    return _PLUS_AS_SPACE.sub(r"\1+\2", raw.strip())


def _notice_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise _bad_request("the notice id must be a positive whole number")
    return int(raw)


@web.middleware
async def json_routing_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                              ) -> web.StreamResponse:
    """A path or method under /api/v1 that no route takes is answered in the API's JSON error
    form, as the API's own errors are (a client's JSON parser could not read aiohttp's text/plain
    "404: Not Found"); 405 keeps its `Allow` header. Paths outside /api/v1 are left as they are."""
    if not request.path.startswith(PREFIX + "/"):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}; use {allowed}",
                      {"Allow": exc.headers.get("Allow", allowed)})
    except web.HTTPNotFound:
        return _error(404, "not_found", f"no such API path: {request.path} (see {PREFIX}/openapi.json)")


def add_api_routes(app: web.Application, clock: Clock, topics: Iterable[str] = ()) -> None:
    """Register the /api/v1 routes on `app`; `clock` stamps audit events and token use; `topics`
    are the catalog's (the summary's topic filter is checked against them)."""
    known_topics = tuple(topics)
    app.middlewares.append(json_routing_errors)

    async def current_staff(request: web.Request) -> Staff:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if not header and _token_in_query(request):
            raise _unauthorized("an API token in the URL is not accepted: send it as `Authorization: Bearer "
                                "<token>`. A URL is kept in logs and proxies along the way: revoke that token "
                                "(`herald token revoke`) and create a new one")
        if not header:
            raise _unauthorized("an API token is required: send `Authorization: Bearer <token>`")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _unauthorized("invalid Authorization header: use `Authorization: Bearer <token>`")
        try:
            staff = await authenticate(credentials.strip(), now=clock.now())
        except TokenExpired as exc:
            raise ApiError(401, "token_expired", f"{exc}; create a new one with `herald token create`",
                           {"WWW-Authenticate": 'Bearer realm="herald", error="invalid_token", '
                                                'error_description="The access token expired"'}) from None
        if staff is None:
            raise _unauthorized("invalid or revoked API token", invalid_token=True)
        return staff

    def endpoint(handler: Handler, *, roles: set[str] | None = None) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                staff = await current_staff(request)
                if roles is not None and staff.role not in roles:
                    raise ApiError(403, "forbidden", "only compliance officers and admins may do this")
                return await handler(request, staff)
            except ApiError as exc:
                return _error(exc.status, exc.code, exc.message, exc.headers)
            except NotFound as exc:
                return _error(404, "not_found", str(exc))
            except PermissionDenied as exc:
                return _error(403, "forbidden", str(exc))
            except UserError as exc:
                return _error(400, "bad_request", str(exc))
            except web.HTTPException:
                raise
            except Exception:  # noqa: BLE001 - logged in full, answered without internals
                log.exception("API request %s %s failed", request.method, request.path_qs)
                return _error(500, "internal_error", "something went wrong on our side; it has been logged")
        return wrapped

    async def readable_notice(notice_id: int, staff: Staff) -> Notice:
        notice = await load_notice(notice_id)
        if not await can_read_notice(staff, notice):
            raise ApiError(403, "forbidden", f"you may not read notice {notice_id}")
        return notice

    # ---- handlers ----------------------------------------------------------------------------

    async def list_notices(request: web.Request, staff: Staff) -> web.StreamResponse:
        limit = _int_param(request, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
        before = _int_param(request, "before", default=None, low=1, high=MAX_ROW_ID)
        query = readable_notices(staff)  # can_read_notice's rule, as GET /notices/{id} applies it
        if before is not None:
            query = query.filter(id__lt=before)
        notices = await query.select_related("author").order_by("-id").limit((limit or DEFAULT_LIMIT) + 1)
        page = notices[:limit]
        recipients = {n.id: n.recipient_count for n in page}
        # a colleague's notice escalated to this CAM: its recipients among their partners, as its report
        colleagues = [n for n in page if n.author_id != staff.id]  # type: ignore[attr-defined]
        scope = await report_scope(staff, colleagues[0]) if colleagues else None
        if scope is not None:
            counts = await scoped_recipient_counts([n.id for n in colleagues], scope)
            recipients.update({n.id: counts.get(n.id, 0) for n in colleagues})
        items = []
        for n in page:
            doc = notice_document(n)
            items.append({key: doc[key] for key in LIST_FIELDS}
                         | {"recipients": recipients[n.id], "report": f"{PREFIX}/notices/{n.id}/report"})
        more = len(notices) > len(page)
        return _json({"notices": items, "next_before": page[-1].id if more and page else None})

    async def get_notice(request: web.Request, staff: Staff) -> web.StreamResponse:
        notice = await readable_notice(_notice_id(request), staff)
        document, summary = notice_document(notice), await notice_summary(notice.id, await report_scope(staff, notice))
        if "scope" in summary:  # a colleague's escalated notice: its reach among this CAM's partners
            document["recipient_count"] = summary["recipients"]
        return _json({"notice": document, "revisions": await notice_revisions(notice), "summary": summary})

    async def get_report(request: web.Request, staff: Staff) -> web.StreamResponse:
        notice_id = _notice_id(request)
        fmt = request.query.get("format", "csv").strip().lower()
        if fmt not in FORMATS:
            raise _bad_request("format must be csv or json")
        notice = await readable_notice(notice_id, staff)
        chunks = report_chunks(notice.id, fmt, now=clock.now(), actor=f"api:{staff.email}",  # type: ignore[arg-type]
                               reader=staff)
        try:
            first = await anext(chunks)  # errors before any byte is sent still get a JSON answer
        except BaseException:
            await chunks.aclose()
            raise
        response = web.StreamResponse(headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="notice-{notice.id}-report.{fmt}"',
        })
        response.content_type = "text/csv" if fmt == "csv" else "application/json"
        response.charset = "utf-8"
        try:
            await response.prepare(request)
            await response.write(first.encode("utf-8"))
            async for chunk in chunks:
                await response.write(chunk.encode("utf-8"))
            # every byte written: the export's outcome, recorded before the body ends so that a
            # client that has read the report whole finds it on the trail (an export without it
            # was cut off, as chat's)
            try:
                await record_report_delivered(notice.id, now=clock.now(), actor=f"api:{staff.email}",
                                              platform="api", fmt=fmt)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - the client has the report; do not cut it off now
                log.exception("report of notice %s: could not record its delivery", notice.id)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            log.info("report of notice %s: the client went away", notice.id)
        except Exception:  # noqa: BLE001 - headers are gone; cut the stream so the file is visibly incomplete
            log.exception("report of notice %s failed while streaming", notice.id)
            if request.transport is not None:
                request.transport.close()
        finally:
            await chunks.aclose()
        return response

    async def get_summary(request: web.Request, staff: Staff) -> web.StreamResponse:
        since_raw, until_raw = request.query.get("since", ""), request.query.get("until", "")
        if not since_raw or not until_raw:
            raise _bad_request("since and until are required (YYYY-MM-DD or ISO-8601 times)")
        since, until = parse_window(_query_time(since_raw), _query_time(until_raw))
        topic = request.query.get("topic", "").strip() or None
        if topic is not None and len(topic) > 50:
            raise _bad_request("topic is too long")
        importance = request.query.get("importance", "").strip().lower() or None
        if importance is not None and importance not in {i.value for i in Importance}:
            raise _bad_request("importance must be nice-to-know, need-to-know or must-know")
        fmt = request.query.get("format", "json").strip().lower() or "json"
        if fmt not in FORMATS:
            raise _bad_request("format must be json or csv")
        document = await export_summary(since=since, until=until, topic=topic, importance=importance,
                                        author_id=None if staff.role in AUDITORS else staff.id,
                                        now=clock.now(), actor=f"api:{staff.email}", fmt=fmt,  # type: ignore[arg-type]
                                        known_topics=known_topics)
        if fmt == "json":
            return _json(document)
        name = f"summary-{since.strftime('%Y%m%dT%H%M%SZ')}-{until.strftime('%Y%m%dT%H%M%SZ')}.csv"
        return web.Response(text=summary_csv(document), content_type="text/csv", charset="utf-8",
                            headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'})

    async def audit_verify(request: web.Request, staff: Staff) -> web.StreamResponse:
        head = request.query.get("head", "").strip()
        try:
            anchor = parse_anchor(head) if head else None
        except UserError as exc:
            raise _bad_request(str(exc)) from None
        return _json(_verification(await verify_chain(anchor=anchor)))

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.json_response(OPENAPI)

    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/notices", endpoint(list_notices))
    app.router.add_get(f"{PREFIX}/notices/{{id}}", endpoint(get_notice))
    # No automatic HEAD: every GET of a report is an export, written to the audit trail.
    app.router.add_get(f"{PREFIX}/notices/{{id}}/report", endpoint(get_report), allow_head=False)
    app.router.add_get(f"{PREFIX}/reports/summary", endpoint(get_summary), allow_head=False)  # an export too
    # No automatic HEAD: it would run the whole chain's verification to send no body.
    app.router.add_get(f"{PREFIX}/audit/verify", endpoint(audit_verify, roles=AUDITORS), allow_head=False)
    for path, handler in api_surveys.ROUTES:  # surveys and A/B tests
        app.router.add_get(f"{PREFIX}{path}", endpoint(handler))


VERIFY_FIELDS = ("ok", "events", "head_seq", "head_hash", "first_broken_seq", "reason")


def _verification(result: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        data = dataclasses.asdict(result)
    elif isinstance(result, dict):
        data = dict(result)
    elif hasattr(result, "_asdict"):
        data = result._asdict()
    else:
        data = {name: getattr(result, name, None) for name in VERIFY_FIELDS}
    out = {name: data.get(name) for name in VERIFY_FIELDS}
    for key, value in data.items():  # anything else the verifier reports, if it is plain JSON
        if key not in out and isinstance(value, (str, int, float, bool, type(None))):
            out[key] = value
    return out


# ---- OpenAPI --------------------------------------------------------------------------------

def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_NOTICE_ID = {"name": "id", "in": "path", "required": True, "description": "Notice id.",
              "schema": {"type": "integer", "minimum": 1}}
_COMMON_ERRORS = {"401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {"$ref": "#/components/responses/Forbidden"}}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_COUNTS = {
    "recipients": {"type": "integer", "description": (
        "Members the notice was sent to: one with copies on Slack and Teams (HERALD_PLATFORM_POLICY=all) is one "
        "recipient, counted by their best copy (delivered if any copy was); a report's rows list each copy.")},
    "delivered": {"type": "integer"},
    "failed": {"type": "integer"},
    "pending": {"type": "integer", "description": "Pending or being sent."},
    "digest": {"type": "integer", "description": "Nice-to-know notices kept for the digest."},
    "cancelled": {"type": "integer", "description": "Not sent: the notice was retracted first."},
    "held": {"type": "integer", "description": "A/B tests: held back until a variant is rolled out."},
    "acknowledged": {"type": "integer", "description": "Members who acknowledged the current ack revision."},
    "rate": {"type": ["number", "null"], "description": "acknowledged / delivered; null when nothing was delivered."},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Herald reports API",
        "version": "1.0.0",
        "description": ("Acknowledgement reports for compliance, survey results and A/B tests. Authenticate with a bearer token from "
                        "`herald token create EMAIL`. Compliance officers and admins read every notice; "
                        "a CAM reads only the notices they authored. A token reads with the role it was "
                        "created with (what both it and its person's current role allow) and expires "
                        "(365 days after creation unless set otherwise)."),
    },
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}],
    "paths": {
        f"{PREFIX}/notices": {
            "get": {
                "operationId": "listNotices",
                "summary": "Notices the caller may read, newest first.",
                "parameters": [
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
                    {"name": "before", "in": "query", "required": False,
                     "description": "Only notices with a smaller id (pass the previous page's next_before).",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID}},
                ],
                "responses": {
                    "200": {"description": "A page of notices.", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["notices", "next_before"],
                        "properties": {
                            "notices": {"type": "array", "items": {"$ref": "#/components/schemas/NoticeListItem"}},
                            "next_before": {"type": ["integer", "null"]},
                        }}}}},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            },
        },
        f"{PREFIX}/notices/{{id}}": {
            "get": {
                "operationId": "getNotice",
                "summary": "A notice, its revisions and its delivery and acknowledgement summary.",
                "parameters": [_NOTICE_ID],
                "responses": {
                    "200": {"description": "The notice.", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["notice", "revisions", "summary"],
                        "properties": {
                            "notice": {"$ref": "#/components/schemas/Notice"},
                            "revisions": {"type": "array", "items": {"$ref": "#/components/schemas/Revision"}},
                            "summary": {"$ref": "#/components/schemas/Summary"},
                        }}}}},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    **_COMMON_ERRORS,
                    "404": {"$ref": "#/components/responses/NotFound"},
                },
            },
        },
        f"{PREFIX}/notices/{{id}}/report": {
            "get": {
                "operationId": "getNoticeReport",
                "summary": "The acknowledgement report: one row per recipient, streamed.",
                "description": ("Writes a `report.exported` audit event as it starts and `report.delivered` "
                                "(platform `api`) once the whole report is sent: a download cut off (the client "
                                "gone, an error mid-stream) has none. CSV: `# key: value` metadata lines, "
                                "then a header row and one row per recipient. JSON: one object with notice, "
                                "revisions, produced_at, audit_chain_head, summary and rows."),
                "parameters": [_NOTICE_ID,
                               {"name": "format", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": list(FORMATS), "default": "csv"}}],
                "responses": {
                    "200": {
                        "description": "The report, as an attachment `notice-<id>-report.<format>`.",
                        "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/json": {"schema": {"$ref": "#/components/schemas/Report"}},
                        },
                    },
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    **_COMMON_ERRORS,
                    "404": {"$ref": "#/components/responses/NotFound"},
                },
            },
        },
        f"{PREFIX}/reports/summary": {
            "get": {
                "operationId": "getSummaryReport",
                "summary": "Counts and acknowledgement rate of every notice sent in a window, with the audit "
                           "chain head they were read at (an export: recorded as report.exported).",
                "parameters": [
                    {"name": "since", "in": "query", "required": True,
                     "description": "Start (inclusive): YYYY-MM-DD or an ISO-8601 time (UTC if no offset).",
                     "schema": {"type": "string"}},
                    {"name": "until", "in": "query", "required": True,
                     "description": "End (exclusive); a bare date includes that whole day.",
                     "schema": {"type": "string"}},
                    {"name": "topic", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "importance", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": [i.value for i in Importance]}},
                    {"name": "format", "in": "query", "required": False,
                     "description": "csv: `# key: value` lines (report, window, filters, produced_at, audit chain "
                                    "head), then a header row and one row per notice, as `herald report --since` "
                                    "writes it; an attachment `summary-<since>-<until>.csv`.",
                     "schema": {"type": "string", "enum": list(FORMATS), "default": "json"}},
                ],
                "responses": {
                    "200": {"description": "One entry per notice, by sent time.", "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/json": {
                        "schema": {"type": "object", "required": [
                            "since", "until", "produced_at", "audit_chain_head", "notices"], "properties": {
                            "since": {"type": "string", "format": "date-time"},
                            "until": {"type": "string", "format": "date-time"},
                            "topic": {"type": ["string", "null"]},
                            "importance": {"type": ["string", "null"]},
                            "produced_at": {"type": "string", "format": "date-time"},
                            "audit_chain_head": {"type": "object", "properties": {
                                "seq": {"type": "integer"}, "hash": {"type": "string"}}},
                            "notices": {"type": "array", "items": {"$ref": "#/components/schemas/SummaryItem"}},
                        }}}}},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                },
            },
        },
        f"{PREFIX}/audit/verify": {
            "get": {
                "operationId": "verifyAuditChain",
                "summary": "Check the tamper-evident audit chain (compliance and admins only).",
                "parameters": [
                    {"name": "head", "in": "query", "required": False,
                     "description": "SEQ:HASH of a chain head kept outside the database (a report's "
                                    "audit_chain_head): not ok unless event SEQ still has that hash.",
                     "schema": {"type": "string", "pattern": "^[0-9]+:[0-9a-fA-F]{64}$"}},
                ],
                "responses": {
                    "200": {"description": "The verification result.", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/Verification"}}}},
                    "400": {"$ref": "#/components/responses/BadRequest"},
                    **_COMMON_ERRORS,
                },
            },
        },
        f"{PREFIX}/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI 3.1 description of this API.",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "A token from `herald token create EMAIL` (starts with hrld_)."},
        },
        "responses": {
            "BadRequest": _error_response("A parameter is missing or invalid."),
            "Unauthorized": {
                "description": ("No token, or an invalid or revoked one (error `unauthorized`), or one past its "
                                "expiry (error `token_expired`, the message saying when it expired)."),
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
            "Forbidden": _error_response("The caller's role does not allow this, or the notice is not theirs."),
            "NotFound": _error_response("No such notice."),
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string", "examples": ["unauthorized"]},
                "message": {"type": "string"}}},
            "NoticeListItem": {"type": "object", "properties": {
                "id": {"type": "integer"}, "title": {"type": "string"}, "topic": {"type": "string"},
                "importance": {"type": "string"}, "status": {"type": "string"}, "audience": {"type": "string"},
                "author": {"type": ["string", "null"]}, "created_at": {"type": "string", "format": "date-time"},
                "sent_at": _NULLABLE_TIME, "deadline": _NULLABLE_TIME, "recipients": {"type": "integer"},
                "report": {"type": "string"}}},
            "Notice": {"type": "object", "properties": {
                "id": {"type": "integer"}, "title": {"type": "string"}, "topic": {"type": "string"},
                "importance": {"type": "string"}, "status": {"type": "string"}, "audience": {"type": "string"},
                "author": {"type": ["string", "null"]}, "body": {"type": "string"}, "link": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"}, "sent_at": _NULLABLE_TIME,
                "deadline": _NULLABLE_TIME, "completed_at": _NULLABLE_TIME, "escalated_at": _NULLABLE_TIME,
                "retracted_at": _NULLABLE_TIME, "retract_reason": {"type": ["string", "null"]},
                "revision": {"type": "integer"}, "ack_revision": {"type": "integer"},
                "recipient_count": {"type": "integer"}}},
            "Revision": {"type": "object", "properties": {
                "revision": {"type": "integer"}, "title": {"type": ["string", "null"]},
                "edited_at": _NULLABLE_TIME, "edited_by": {"type": "string"}, "material": {"type": "boolean"},
                "original": {"type": "boolean"}}},
            "OrganisationSummary": {"type": "object", "properties": {
                "organisation_id": {"type": "string"}, "organisation": {"type": "string"}, **_COUNTS}},
            "Summary": {"type": "object", "properties": {
                "notice_id": {"type": "integer"}, "ack_revision": {"type": "integer"}, **_COUNTS,
                "organisations": {"type": "array", "items": {"$ref": "#/components/schemas/OrganisationSummary"}},
                "variants": {"type": "array", "description": "A/B tests only: the counts per variant.",
                             "items": {"type": "object", "properties": {
                                 "variant": {"type": ["string", "null"]}, **_COUNTS}}}}},
            "SummaryItem": {"type": "object", "properties": {
                "id": {"type": "integer"}, "title": {"type": "string"}, "topic": {"type": "string"},
                "importance": {"type": "string"}, "status": {"type": "string"}, "sent_at": _NULLABLE_TIME,
                **_COUNTS}},
            "ReportRow": {"type": "object", "properties": {
                "organisation_id": {"type": "string"}, "organisation": {"type": "string"},
                "member": {"type": "string"}, "email": {"type": "string"}, "role": {"type": "string"},
                "platform": {"type": "string"}, "delivered_at": _NULLABLE_TIME,
                "failure_reason": {"type": "string"}, "reminders_sent": {"type": "integer"},
                "acknowledged_at": _NULLABLE_TIME, "acknowledged_revision": {"type": ["integer", "null"]},
                "escalated_at": _NULLABLE_TIME,
                "variant": {"type": ["string", "null"], "description": "A/B tests: the variant this member got."}}},
            "Report": {"type": "object",
                       "required": ["notice", "revisions", "produced_at", "audit_chain_head", "summary", "rows"],
                       "properties": {
                           "notice": {"$ref": "#/components/schemas/Notice"},
                           "revisions": {"type": "array", "items": {"$ref": "#/components/schemas/Revision"}},
                           "produced_at": {"type": "string", "format": "date-time"},
                           "audit_chain_head": {"type": "object", "properties": {
                               "seq": {"type": "integer"}, "hash": {"type": "string"}}},
                           "summary": {"$ref": "#/components/schemas/Summary"},
                           "rows": {"type": "array", "items": {"$ref": "#/components/schemas/ReportRow"}}}},
            "Verification": {"type": "object", "properties": {
                "ok": {"type": "boolean"}, "events": {"type": "integer"}, "head_seq": {"type": "integer"},
                "head_hash": {"type": "string"}, "first_broken_seq": {"type": ["integer", "null"]},
                "reason": {"type": ["string", "null"]}}},
        },
    },
}


OPENAPI["paths"].update(api_surveys.PATHS)
OPENAPI["components"]["schemas"].update(api_surveys.SCHEMAS)
