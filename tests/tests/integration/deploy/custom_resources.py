"""Custom resources (kinds outside the Kubernetes API, e.g. the Prometheus operator's PodMonitor and
PrometheusRule) checked against their operator's schemas, as shipped in a Python package: cloudcoil's models are
generated from the operator's CRDs (OpenAPI: required fields, types, enums, patterns). They are made strict here:
an unknown or misspelt field is an error, as the API server's strict field validation makes it at apply time.
A kind no installed package knows is checked for the fields every object needs.

Reads a JSON array of objects on stdin; writes a JSON array of {kind, name, schema, errors}.
"""

import importlib
import json
import sys

import cloudcoil.pydantic

# Before any model class is created: forbid unknown fields, accept only the manifests' camelCase names.
cloudcoil.pydantic.BaseModel.model_config.update(
    extra="forbid", populate_by_name=False, validate_by_name=False, validate_by_alias=True
)

# apiVersion -> the module holding its kinds' models.
MODELS = {
    "monitoring.coreos.com/v1": "cloudcoil.models.prometheus_operator.v1",
    "monitoring.coreos.com/v1alpha1": "cloudcoil.models.prometheus_operator.v1alpha1",
}


def model_for(api_version, kind):
    module = MODELS.get(api_version)
    if module is None:
        return None
    return getattr(importlib.import_module(module), kind, None)


def required_fields(obj):
    errors = []
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata.get("name"), str) or not metadata["name"]:
        errors.append("metadata.name: required")
    if not isinstance(obj.get("spec"), dict) or not obj["spec"]:
        errors.append("spec: required")
    return errors


def check(obj):
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    name = (obj.get("metadata") or {}).get("name")
    model = model_for(api_version, kind)
    if model is None:
        return {"kind": kind, "name": name, "schema": False, "errors": required_fields(obj)}
    try:
        model.model_validate(obj)
        errors = []
    except Exception as error:  # pydantic's ValidationError lists every failing field
        errors = [str(error)]
    return {"kind": kind, "name": name, "schema": True, "errors": errors}


json.dump([check(obj) for obj in json.load(sys.stdin)], sys.stdout)
