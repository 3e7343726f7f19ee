"""Validate request bodies against the Azure ARM JSON schemas of Microsoft.MachineLearningServices.

The schemas live outside the repo (../shared/azure-schemas, or $OPML_AZURE_SCHEMAS), one folder per
api-version. They need four adjustments to validate what the SDK really sends (see their README):
Draft 7 (they use `const`), per-subtype allow-lists for `allOf[base, oneOf[subtypes]]`, enums compared
case-insensitively, and errors reported from the branch that is not an ARM template expression.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

COMMON_ID = "https://schema.management.azure.com/schemas/common/definitions.json"
EXPRESSION_REF = f"{COMMON_ID}#/definitions/expression"
_REPO = Path(__file__).resolve().parents[2]


class SchemasMissing(RuntimeError):
    """The schema folder is not where the tests look for it."""


class BodyInvalid(AssertionError):
    """A request body does not validate; the message names the body path and the schema path."""


def schemas_dir() -> Path:
    """$OPML_AZURE_SCHEMAS, else ../shared/azure-schemas next to the repo."""
    env = os.environ.get("OPML_AZURE_SCHEMAS")
    path = Path(env) if env else _REPO.parent / "shared" / "azure-schemas"
    if not (path / "common" / "definitions.json").is_file():
        raise SchemasMissing(
            f"Azure ARM schemas not found in {path}: copy the folder `schemas/` of the public repository "
            "Azure/azure-resource-manager-schemas (Microsoft.MachineLearningServices.json per api-version "
            "and common/definitions.json) there, or point OPML_AZURE_SCHEMAS at it"
        )
    return path


def resource_type(path_after_workspace: list[str]) -> str:
    """['jobs', 'NAME'] -> 'workspaces_jobs'; ['data', 'n', 'versions', '1'] -> 'workspaces_data_versions'."""
    return "_".join(["workspaces", *path_after_workspace[0::2]])


def _ci_enum(validator: Any, enums: Any, instance: Any, schema: Any):
    if isinstance(instance, str) and any(isinstance(e, str) and e.lower() == instance.lower() for e in enums):
        return
    if instance in enums:
        return
    yield jsonschema.ValidationError(f"{instance!r} is not one of {enums!r}")


_Validator = jsonschema.validators.extend(Draft7Validator, {"enum": _ci_enum})


def _props_of(node: Any, defs: dict[str, Any], seen: frozenset[str] = frozenset()) -> set[str]:
    """Property names a (possibly $ref'd, possibly allOf'd) schema node declares."""
    if not isinstance(node, dict):
        return set()
    out = set(node.get("properties", {}))
    ref = node.get("$ref", "")
    if ref.startswith("#/definitions/"):
        name = ref.split("/")[-1]
        if name not in seen:
            out |= _props_of(defs.get(name), defs, seen | {name})
    for part in node.get("allOf", []):
        out |= _props_of(part, defs, seen)
    return out


def _fix_polymorphism(node: Any, defs: dict[str, Any]) -> None:
    """allOf[base(additionalProperties: false), oneOf[subtypes]] -> per-subtype allow-lists."""
    if isinstance(node, dict):
        parts = node.get("allOf")
        if (
            isinstance(parts, list)
            and len(parts) == 2
            and isinstance(parts[0], dict)
            and parts[0].get("additionalProperties") is False
            and isinstance(parts[1], dict)
            and "oneOf" in parts[1]
        ):
            base = parts[0]
            base_props = set(base.get("properties", {}))
            del base["additionalProperties"]
            for branch in parts[1]["oneOf"]:
                allowed = base_props | _props_of(branch, defs)
                branch.setdefault("allOf", []).append(
                    {"properties": {k: {} for k in sorted(allowed)}, "additionalProperties": False}
                )
        for value in node.values():
            _fix_polymorphism(value, defs)
    elif isinstance(node, list):
        for value in node:
            _fix_polymorphism(value, defs)


@functools.cache
def _load(api_version: str) -> tuple[dict[str, Any], Registry]:
    root = schemas_dir()
    file = root / api_version / "Microsoft.MachineLearningServices.json"
    if not file.is_file():
        raise BodyInvalid(f"no ARM schema for api-version {api_version} in {root}")
    doc = json.loads(file.read_text(encoding="utf-8"))
    common = json.loads((root / "common" / "definitions.json").read_text(encoding="utf-8"))
    _fix_polymorphism(doc["definitions"], doc["definitions"])
    doc = {k: v for k, v in doc.items() if k != "$schema"}
    common = {k: v for k, v in common.items() if k != "$schema"}
    registry = Registry().with_resources(
        [
            (COMMON_ID, Resource(common, DRAFT7)),
            (doc.get("id", f"urn:opml:{api_version}"), Resource(doc, DRAFT7)),
        ]
    )
    return doc, registry


def validate(api_version: str, path_after_workspace: list[str], body: dict[str, Any]) -> str:
    """Validate one PUT body; returns the resource definition used, raises BodyInvalid with the paths."""
    doc, registry = _load(api_version)
    rtype = resource_type(path_after_workspace)
    resource = doc["resourceDefinitions"].get(rtype)
    if resource is None:
        raise BodyInvalid(f"{rtype}: no resource definition in the {api_version} schema")
    schema = copy.deepcopy(resource)
    # The body is what ARM templates put under the resource, minus the template-only keys.
    schema["required"] = [k for k in schema.get("required", []) if k not in ("name", "apiVersion", "type")]
    schema["additionalProperties"] = False
    schema["definitions"] = copy.deepcopy(doc["definitions"])
    schema["id"] = f"urn:opml:{api_version}:{rtype}"
    validator = _Validator(schema, registry=registry)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        raise BodyInvalid(f"{rtype} ({api_version}): " + "; ".join(_explain(e, schema) for e in errors[:3]))
    return rtype


def _is_expression(branch: Any) -> bool:
    return isinstance(branch, dict) and branch.get("$ref") == EXPRESSION_REF


def _explain(error: jsonschema.ValidationError, root: dict[str, Any]) -> str:
    """The most specific error: inside oneOf, follow the branch that is not an expression / wrong subtype."""
    while error.validator == "oneOf" and error.context:
        branches = error.validator_value
        by_branch: dict[int, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
        candidates = [(i, errs) for i, errs in by_branch.items() if not _is_expression(branches[i])]
        # A subtype whose discriminator does not match fails on `const`: prefer the branch that got past it.
        matching = [(i, errs) for i, errs in candidates if not any(e.validator == "const" for e in errs)]
        pick = matching or candidates
        if not pick:
            break
        errs = min(pick, key=lambda ie: len(ie[1]))[1]
        error = max(errs, key=lambda e: len(e.absolute_path))
    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
    schema_path = "/".join(str(p) for p in error.absolute_schema_path)
    return f"body {where}: {error.message} [schema {schema_path}]"
