"""The control plane's OpenAPI document: what the app in opml.pipelines.app does, to the status code.

Besides the generic `/pipelines/{id}/runs`, each published pipeline gets its own path whose
ParameterAssignments list that pipeline's parameters (closed: unknown names are refused), with the
types they are declared with and the bounds of the settings they fill.
"""

from __future__ import annotations

from typing import Any

from opml.naming import MAX_LEN, NAME_RE
from opml.pipelines.spec import INT64, SETTINGS, PipelineSpec

MAX_DESCRIPTION = 1000  # characters of a trigger's Description (kept for Azure compatibility, not stored)
RETRY_AFTER_S = 10  # a 429's Retry-After: seconds until a trigger is worth retrying
ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"  # a published pipeline id (a uuid)
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
NAME_PATTERN = f"^{NAME_RE.pattern}$"

# JSON-schema of each parameter type, as opml.pipelines.spec.coerce accepts it
_TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": INT64[0], "maximum": INT64[1]},
    "float": {"type": "number"},
    "string": {"type": "string", "pattern": "^[^\\x00]*$"},
    "bool": {"type": "boolean"},
}


def _err(description: str, **extra: Any) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}} | extra


def _ok(description: str, ref: str) -> dict:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _nullable(schema: dict) -> dict:
    return schema | {"nullable": True}


UNAUTHORIZED = _err("missing, expired or invalid token")
DUPLICATE_AUTH = _err("more than one Authorization header")


def _setting_bounds(step_type: str, key: str) -> dict[str, Any]:
    """JSON-schema bounds of a step setting (from its pydantic field), for a parameter that is its whole value."""
    from opml.names import PRIMARY_METRICS

    if step_type == "automl" and key == "primary_metric":
        return {"enum": list(PRIMARY_METRICS)}
    field = SETTINGS[step_type].model_fields.get(key)
    out: dict[str, Any] = {}
    for m in field.metadata if field else ():
        if getattr(m, "gt", None) is not None:
            out |= {"minimum": m.gt, "exclusiveMinimum": True}
        if getattr(m, "ge", None) is not None:
            out["minimum"] = m.ge
        if getattr(m, "lt", None) is not None:
            out |= {"maximum": m.lt, "exclusiveMaximum": True}
        if getattr(m, "le", None) is not None:
            out["maximum"] = m.le
    if key in ("name", "model_name", "experiment"):
        out |= {"pattern": NAME_PATTERN, "maxLength": MAX_LEN}
    return out


def parameters_schema(spec: PipelineSpec) -> dict[str, Any]:
    """ParameterAssignments for one pipeline: its parameters by name, typed, nothing else."""
    props: dict[str, Any] = {}
    for p in spec.parameters:
        schema: dict[str, Any] = dict(_TYPES[p.type])
        whole = "${" + p.name + "}"
        for step in spec.steps:
            for key, value in step.settings.items():
                if isinstance(value, str) and value.replace(" ", "") == whole:
                    schema |= _setting_bounds(step.type, key)
        if p.description:
            schema["description"] = p.description
        if p.default is not None:
            schema["default"] = p.default
        props[p.name] = schema
    required = [p.name for p in spec.parameters if p.default is None]
    return {"type": "object", "additionalProperties": False, "properties": props} | (
        {"required": required} if required else {"nullable": True})


def _trigger_request(params: dict[str, Any]) -> dict[str, Any]:
    doc = {"type": "object", "additionalProperties": False, "properties": {
        "ExperimentName": {"type": "string", "minLength": 1, "maxLength": MAX_LEN, "pattern": NAME_PATTERN,
                           "nullable": True, "example": "pipeline-rest-endpoint",
                           "description": "default: the pipeline's name"},
        "ParameterAssignments": params,
        "Description": {"type": "string", "maxLength": MAX_DESCRIPTION, "nullable": True}}}
    if params.get("required"):
        doc["required"] = ["ParameterAssignments"]
    return doc


def _trigger(summary: str, operation_id: str, body_ref: str, with_id: bool) -> dict[str, Any]:
    accepted = _ok("run submitted", "TriggerReply") | {"links": {"GetRun": {
        "operationId": "getRun", "parameters": {"id": "$response.body#/Id"},
        "description": "the run just submitted (RunUrl)"}}}
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": operation_id,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body_ref}"}}}},
        "responses": {
            "200": accepted,
            "400": _err("malformed JSON, an empty body, or more than one Authorization header"),
            "401": UNAUTHORIZED,
            "404": _err("no such published pipeline"),
            "409": _err("the published pipeline is disabled"),
            "413": _err("request body over 1 MiB"),
            "422": _err("an unknown field or parameter, a value of the wrong type, or an invalid name"),
            "429": _err("the published pipeline has its maximum of active runs", headers={"Retry-After": {
                "description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}})}}
    if with_id:
        op["parameters"] = [{"name": "id", "in": "path", "required": True,
                             "schema": {"type": "string", "pattern": ID_PATTERN}}]
    return op


def document(base_url: str, published: list[tuple[str, PipelineSpec]]) -> dict[str, Any]:
    """The OpenAPI 3.0 document; `published`: (id, definition) of each published pipeline."""
    run_step = {"type": "object", "properties": {
        "Name": {"type": "string"}, "Type": {"type": "string"}, "Status": {"type": "string"},
        "Reused": {"type": "boolean"}, "ReusedFrom": _nullable({"type": "string"}),
        "StartTime": _nullable({"type": "string"}), "EndTime": _nullable({"type": "string"}),
        "DurationSeconds": _nullable({"type": "number"}), "Outputs": {"type": "object"},
        "Error": _nullable({"type": "string"})}}
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
        "TriggerRequest": _trigger_request({"type": "object", "nullable": True, "example": {"time_budget": 30},
                                            "description": "parameter name: value; the names and types are the "
                                                           "pipeline's (see its own path below)"}),
        "TriggerReply": {"type": "object", "required": ["Id", "Status", "RunUrl"], "properties": {
            "Id": {"type": "string"}, "Status": {"type": "string", "example": "NotStarted"},
            "PipelineId": {"type": "string"}, "Pipeline": {"type": "string"},
            "ExperimentName": {"type": "string"}, "ParameterAssignments": {"type": "object"},
            "CreatedTime": {"type": "string"}, "RunUrl": {"type": "string"}}},
        "Run": {"type": "object", "required": ["Id", "Status", "Steps"], "properties": {
            "Id": {"type": "string"},
            "Status": {"type": "string", "enum": ["NotStarted", "Queued", "Running", "Completed", "Failed",
                                                  "Canceled"]},
            "Pipeline": {"type": "string"}, "PipelineId": _nullable({"type": "string"}),
            "ExperimentName": {"type": "string"}, "ParameterAssignments": {"type": "object"},
            "Error": _nullable({"type": "string"}), "CreatedTime": {"type": "string"},
            "StartTime": _nullable({"type": "string"}), "EndTime": _nullable({"type": "string"}),
            "DurationSeconds": _nullable({"type": "number"}),
            "Steps": {"type": "array", "items": run_step}}},
        "PublishedList": {"type": "object", "required": ["value"], "properties": {"value": {
            "type": "array", "items": {"type": "object", "properties": {
                "Id": {"type": "string"}, "Name": {"type": "string"}, "Version": {"type": "integer"},
                "Status": {"type": "string", "enum": ["Active", "Disabled"]}, "Endpoint": {"type": "string"}}}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {
            "status": {"type": "string", "enum": ["Healthy"]}, "pid": {"type": "integer"},
            "uptime_s": {"type": "number"}}},
    }
    paths: dict[str, Any] = {
        "/pipelines/{id}/runs": {"post": _trigger(
            "Trigger a published pipeline; answers at once, the run goes on in the background", "trigger",
            "TriggerRequest", True)},
    }
    for pid, spec in published:
        ref = f"TriggerRequest_{pid}"
        schemas[ref] = _trigger_request(parameters_schema(spec))
        paths[f"/pipelines/{pid}/runs"] = {"post": _trigger(f"Trigger published pipeline {spec.name} ({pid})",
                                                            f"trigger_{pid}", ref, False)}
    paths |= {
        "/runs/{id}": {"get": {
            "summary": "A pipeline run's status and steps (a run whose executor died is reported Failed)",
            "operationId": "getRun",
            "parameters": [{"name": "id", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": RUN_ID_PATTERN}}],
            "responses": {"200": _ok("the run", "Run"), "400": DUPLICATE_AUTH, "401": UNAUTHORIZED,
                          "404": _err("no such run")}}},
        "/pipelines": {"get": {"summary": "Published pipelines and their endpoints", "operationId": "listPublished",
                               "responses": {"200": _ok("list", "PublishedList"), "400": DUPLICATE_AUTH,
                                             "401": UNAUTHORIZED}}},
        "/": {"get": {"summary": "Health", "operationId": "health", "security": [],
                      "responses": {"200": _ok("Healthy", "Health")}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [], "responses": {
            "200": {"description": "OpenAPI 3.0", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "opml control plane: published pipelines", "version": "1",
                 "description": "Trigger published pipelines and follow their runs. Authenticate with "
                                "`Authorization: Bearer <token>` from `opml auth token`. A method a path does "
                                "not list answers 405 with an Allow header."},
        "servers": [{"url": base_url}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
                       "schemas": schemas},
        "security": [{"bearer": []}],
        "paths": paths,
    }
