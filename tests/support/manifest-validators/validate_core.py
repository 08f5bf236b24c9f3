"""Reads a JSON array of Kubernetes objects on stdin and prints one JSON line per object:
{kind, name, result: "valid" | "invalid" | "no-schema", errors}. Core kinds are checked with
kubernetes-validate (the API's own OpenAPI schemas, strict: unknown fields are errors)."""
import json
import sys

import kubernetes_validate

KUBERNETES_VERSION = "1.32"


def check(obj):
    name = (obj.get("metadata") or {}).get("name")
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        return {"kind": obj.get("kind"), "name": name, "result": "valid"}
    except kubernetes_validate.SchemaNotFoundError:
        return {"kind": obj.get("kind"), "name": name, "result": "no-schema"}
    except kubernetes_validate.ValidationError as error:
        return {"kind": obj.get("kind"), "name": name, "result": "invalid", "errors": str(error)}


for obj in json.load(sys.stdin):
    print(json.dumps(check(obj)))
