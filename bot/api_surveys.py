"""/api/v1 endpoints for pulse surveys and A/B tests, registered by `bot.api` behind the same bearer
tokens and error mapping: compliance officers and admins read everything, a CAM their own surveys
and A/B tests (and the journeys' surveys for their own partners). Results come from the same core
functions as chat and the CLI, so anonymity rules apply here too."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.common.errors import UserError
from bot.core.notices.ab_results import variant_results
from bot.core.surveys.listing import list_surveys as surveys_page
from bot.core.surveys.results import results_csv, survey_results
from bot.core.surveys.stages import survey_stages
from storage.models import MAX_ROW_ID, Staff

NO_STORE = {"Cache-Control": "no-store"}
_LIST_FIELDS = ("id", "question", "kind", "anonymous", "status", "open", "journey_step", "recipients")


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise UserError("the id must be a positive whole number")
    return int(raw)


def _limit(request: web.Request, name: str, default: int | None, high: int) -> int | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(high)) or not 1 <= int(raw) <= high:
        raise UserError(f"{name} must be a whole number between 1 and {high}")
    return int(raw)


async def list_surveys(request: web.Request, staff: Staff) -> web.StreamResponse:
    limit = _limit(request, "limit", 50, 200) or 50
    found = await surveys_page(staff, before=_limit(request, "before", None, MAX_ROW_ID), limit=limit)
    items = [{**{key: s[key] for key in _LIST_FIELDS}, "results": f"/api/v1/surveys/{s['id']}"}
             for s in found.surveys]
    return web.json_response({"surveys": items, "next_before": found.next_before}, headers=NO_STORE)


async def get_survey(request: web.Request, staff: Staff) -> web.StreamResponse:
    fmt = request.query.get("format", "json").strip().lower()
    if fmt not in ("json", "csv"):
        raise UserError("format must be json or csv")
    results = await survey_results(_id(request), staff, answers_listed=0 if fmt == "csv" else None)
    if fmt == "csv":
        return web.Response(text=results_csv(results), content_type="text/csv", charset="utf-8", headers={
            **NO_STORE, "Content-Disposition": f'attachment; filename="survey-{results["survey"]["id"]}-results.csv"'})
    return web.json_response(results, headers=NO_STORE)


async def get_stages(request: web.Request, staff: Staff) -> web.StreamResponse:
    return web.json_response({"stages": await survey_stages(staff)}, headers=NO_STORE)


async def get_variants(request: web.Request, staff: Staff) -> web.StreamResponse:
    return web.json_response(await variant_results(_id(request), staff), headers=NO_STORE)


# (path under /api/v1, handler), in the order they are matched
ROUTES = (("/surveys", list_surveys), ("/surveys/stages", get_stages), ("/surveys/{id}", get_survey),
          ("/notices/{id}/variants", get_variants))


# ---- OpenAPI --------------------------------------------------------------------------------

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_ERRORS = {"400": {"$ref": "#/components/responses/BadRequest"},
           "401": {"$ref": "#/components/responses/Unauthorized"},
           "403": {"$ref": "#/components/responses/Forbidden"},
           "404": {"$ref": "#/components/responses/NotFound"}}
_NULL_NUMBER = {"type": ["number", "null"]}
_DISTRIBUTION = {"type": ["array", "null"], "description": "Null when hidden by the anonymity threshold.",
                 "items": {"type": "object", "properties": {
                     "value": {"type": "integer"}, "label": {"type": "string"}, "count": {"type": "integer"},
                     "share": _NULL_NUMBER}}}
_NPS = {"type": ["object", "null"], "description": "0-10 scales only: % promoters (9-10) minus % detractors (0-6).",
        "properties": {"score": {"type": ["integer", "null"]}, "promoters": {"type": "integer"},
                       "passives": {"type": "integer"}, "detractors": {"type": "integer"}}}
_FIGURES = {"recipients": {"type": "integer", "description": "Members the survey was delivered to."},
            "answered": {"type": "integer"}, "response_rate": _NULL_NUMBER, "distribution": _DISTRIBUTION,
            "mean": _NULL_NUMBER, "nps": _NPS}

PATHS: dict[str, Any] = {
    "/api/v1/surveys": {"get": {
        "operationId": "listSurveys", "summary": "Surveys the caller may read, newest first.",
        "parameters": [{"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                       {"name": "before", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1}}],
        "responses": {"200": {"description": "A page of surveys.", "content": {"application/json": {"schema": {
            "type": "object", "properties": {
                "surveys": {"type": "array", "items": {"$ref": "#/components/schemas/SurveyListItem"}},
                "next_before": {"type": ["integer", "null"]}}}}}},
            "400": _ERRORS["400"], "401": _ERRORS["401"]}}},
    "/api/v1/surveys/stages": {"get": {
        "operationId": "getSurveyStages", "summary": "The journeys' surveys: results per journey stage.",
        "responses": {"200": {"description": "One entry per journey step that sends a survey.",
                              "content": {"application/json": {"schema": {"type": "object", "properties": {
                                  "stages": {"type": "array", "items": {"$ref": "#/components/schemas/SurveyStage"}}}}}}},
                      "401": _ERRORS["401"], "403": _ERRORS["403"]}}},
    "/api/v1/surveys/{id}": {"get": {
        "operationId": "getSurveyResults",
        "summary": "A survey's results: response rate, distribution, mean, NPS, breakdowns.",
        "description": ("Anonymous surveys: no member-level data, and neither the total nor a segment with "
                        "fewer than 5 answers (small segments are pooled into an 'other' row)."),
        "parameters": [_ID, {"name": "format", "in": "query", "required": False,
                             "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"}}],
        "responses": {"200": {"description": "The results.", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SurveyResults"}},
            "text/csv": {"schema": {"type": "string"}}}}, **_ERRORS}}},
    "/api/v1/notices/{id}/variants": {"get": {
        "operationId": "getVariantResults",
        "summary": "An A/B test's variants compared, with significance tests.",
        "description": ("Acknowledgement rate (must-know) and button presses: Pearson's chi-square test, or "
                        "Fisher's exact test when an expected count is under 5; time to acknowledge: Mann-Whitney "
                        "U (2 variants) or Kruskal-Wallis. Below 20 delivered per variant (5 acknowledgements for "
                        "times) the comparison says 'not enough data yet'. Only the members given a variant at "
                        "the send are compared; those held back by the share and sent the winner are under "
                        "`rollout`."),
        "parameters": [_ID],
        "responses": {"200": {"description": "The comparison.", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/VariantResults"}}}}, **_ERRORS}}},
}

SCHEMAS: dict[str, Any] = {
    "SurveyListItem": {"type": "object", "properties": {
        "id": {"type": "integer"}, "question": {"type": "string"}, "kind": {"type": "string", "enum": ["options", "scale"]},
        "anonymous": {"type": "boolean"}, "status": {"type": "string"}, "open": {"type": "boolean"},
        "journey_step": {"type": ["string", "null"]},
        "recipients": {"type": "integer", "description": "Members the survey was delivered to."},
        "results": {"type": "string"}}},
    "SurveySegment": {"type": "object", "properties": {
        "segment": {"type": "string"}, **_FIGURES, "segments": {"type": "integer",
                                                                "description": "Only on the pooled 'other' row."}}},
    "SurveyResults": {"type": "object", "properties": {
        "survey": {"type": "object"}, "anonymous": {"type": "boolean"}, "threshold": {"type": ["integer", "null"]},
        "suppressed": {"type": "boolean", "description": "Anonymous and under the threshold: no figures yet."},
        "total": {"type": "object", "properties": {**_FIGURES, "changed_answers": {"type": "integer"}}},
        "breakdowns": {"type": "object", "properties": {
            dim: {"type": "array", "items": {"$ref": "#/components/schemas/SurveySegment"}}
            for dim in ("tier", "region", "role", "organisation")}},
        "comments": {"type": "array", "description": "Anonymous: texts only, in alphabetical order."},
        "answers": {"type": ["array", "null"], "description": "Named surveys: one row per member; null if anonymous."},
        "scope": {"type": "string"}}},
    "SurveyStage": {"type": "object", "properties": {
        "survey_id": {"type": "integer"}, "step": {"type": "string"}, "question": {"type": "string"},
        "journeys": {"type": "array"}, "open": {"type": "boolean"}, "anonymous": {"type": "boolean"},
        "suppressed": {"type": "boolean"}, **_FIGURES}},
    "VariantResults": {"type": "object", "properties": {
        "notice_id": {"type": "integer"}, "title": {"type": "string"}, "share_percent": {"type": ["integer", "null"]},
        "held": {"type": "integer"}, "winner": {"type": ["string", "null"]},
        "variants": {"type": "array", "items": {"type": "object"},
                     "description": "The experiment's members only: those given a variant at the send."},
        "rollout": {"type": ["object", "null"], "description": (
            "The winner's rollout to the members held back by the share, not counted in `variants` or "
            "the tests: members it went to, delivered, pressed a button, acknowledged (must-know)."),
            "properties": {"variant": {"type": "string"}, "members": {"type": "integer"},
                           "delivered": {"type": "integer"}, "interacted": {"type": "integer"},
                           "acknowledged": {"type": "integer"}}},
        "comparisons": {"type": "array", "items": {"type": "object", "properties": {
            "metric": {"type": "string"}, "enough_data": {"type": "boolean"}, "test": {"type": ["string", "null"]},
            "p_value": _NULL_NUMBER, "significant": {"type": "boolean"}, "leader": {"type": "string"},
            "note": {"type": "string"}, "minimum_per_variant": {"type": "integer"}}}},
        "alpha": {"type": "number"}}},
}
