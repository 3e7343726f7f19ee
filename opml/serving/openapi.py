"""The endpoint's swagger.json: OpenAPI 3 with the Bearer scheme and an example built from the training schema."""

from __future__ import annotations

from typing import Any

from opml.serving.requests import Column


def build(model_ref: str, columns: list[Column], classes: list[str], example: dict[str, Any],
          *, auth_enabled: bool, server_url: str) -> dict[str, Any]:
    record = {
        "type": "object",
        "required": [c.name for c in columns],
        "additionalProperties": False,
        "properties": {
            c.name: ({"type": "number", "nullable": True} if c.kind == "numeric"
                     else {"type": "string", "nullable": True})
            for c in columns
        },
        "example": example,
    }
    # additionalProperties: false exactly where the app refuses extra fields (records, the top level of a body)
    v1 = {"type": "object", "required": ["data"], "additionalProperties": False,
          "properties": {"data": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Record"}}}}
    v2 = {"type": "object", "required": ["Inputs"], "additionalProperties": False, "properties": {
        "Inputs": {"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Record"}}}},
        "GlobalParameters": {"type": "object", "nullable": True, "properties": {
            "method": {"type": "string", "enum": ["predict", "predict_proba"], "default": "predict"}}}}}
    error = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    err_ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    labels = {"type": "array", "items": {"type": "string", "enum": classes}}
    health = {"type": "object", "required": ["status", "model", "classes", "inference", "auth_enabled"],
              "properties": {"status": {"type": "string", "enum": ["Healthy", "Degraded"]},
                             "model": {"type": "string"}, "classes": {"type": "array", "items": {"type": "string"}},
                             "inference": {"type": "string"}, "auth_enabled": {"type": "boolean"},
                             "keys_error": {"type": "string"}}}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": f"opml scoring endpoint for {model_ref}", "version": model_ref.rsplit(":", 1)[-1],
                 "description": ("Scores records with the registered model. Labels apply the model's decision "
                                 f"threshold; predict_proba returns per-row probabilities in class order {classes}.")},
        "servers": [{"url": server_url}],
        "paths": {
            "/score": {"post": {
                "summary": "Score records",
                "operationId": "score",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"oneOf": [{"$ref": "#/components/schemas/ScoreRequest"},
                                         {"$ref": "#/components/schemas/ScoreRequestV2"}]},
                    "example": {"data": [example]}}}},
                "responses": {
                    "200": {"description": "Predictions", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {
                            "result": labels,
                            "Results": {"oneOf": [labels, {"type": "array", "items": {
                                "type": "array", "items": {"type": "number"}}}]}}},
                        "example": {"result": [classes[0]]}}}},
                    "400": {"description": "Malformed JSON (an empty body is), or Authorization sent twice",
                            **err_ref},
                    "413": {"description": "Body too large", **err_ref},
                    "422": {"description": "Records do not match the schema", **err_ref},
                },
            }},
            "/": {"get": {"summary": "Health", "operationId": "health", "responses": {"200": {
                "description": "Healthy, or Degraded with the reason (the keys file is unreadable: the last good keys "
                               "stay in force)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "responses": {"200": {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {"Record": record, "ScoreRequest": v1, "ScoreRequestV2": v2, "Error": error,
                                   "Health": health}},
    }
    if auth_enabled:
        doc["components"]["securitySchemes"] = {"Bearer": {"type": "http", "scheme": "bearer",
                                                           "description": "The endpoint's primary or secondary key"}}
        score = doc["paths"]["/score"]["post"]
        score["security"] = [{"Bearer": []}]
        score["responses"]["401"] = {"description": "Missing or invalid key", **err_ref}
    return doc
