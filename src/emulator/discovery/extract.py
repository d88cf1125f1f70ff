#!/usr/bin/env python3
"""Trim Google's discovery documents to what natgw's emulator checks request bodies against.

Usage (from the repository root):
    python3 src/emulator/discovery/extract.py ../shared/gcp-discovery src/emulator/discovery

Keeps, for every schema reachable from the request bodies the emulator accepts, each field's type, format,
enum, $ref, items, additionalProperties, whether it is output only (`readOnly`, or "[Output Only]" in its
description, which is how older Compute fields say it), the methods that require it, and the method that alone may
set it (`onlyVia`, from "These can only be added or modified by the setLabels method", which Compute says of
`Address.labels` and `ForwardingRule.labels`): an insert does not store such a field. Descriptions are dropped.
"""
import json
import re
import sys

COMPUTE_ROOTS = [
    "Address", "Instance", "Network", "Subnetwork", "Route", "Firewall", "Metadata", "Tags",
    "InstancesSetLabelsRequest", "RegionSetLabelsRequest",
    "InstanceTemplate", "InstanceGroupManager", "InstanceGroupManagersCreateInstancesRequest",
    "InstanceGroupManagersUpdatePerInstanceConfigsReq", "InstanceGroupManagersDeletePerInstanceConfigsReq",
    "InstanceGroupManagersRecreateInstancesRequest", "InstanceGroupManagersApplyUpdatesRequest",
    "HealthCheck", "BackendService", "ResourceGroupReference",
    "ForwardingRule",
]
CONTAINER_ROOTS = ["CreateClusterRequest", "UpdateNodePoolRequest"]


# The discovery text runs words together ("by thesetLabels method"), so "the" may touch the method name.
ONLY_VIA = re.compile(r"can only be added or modified by (?:the\s*)?(\w+) method")


def field(spec):
    out = {}
    for key in ("type", "format", "$ref", "enum"):
        if key in spec:
            out[key] = spec[key]
    if "items" in spec:
        out["items"] = field(spec["items"])
    if "additionalProperties" in spec:
        out["additionalProperties"] = field(spec["additionalProperties"])
    description = spec.get("description", "")
    if spec.get("readOnly") or "[Output Only]" in description or description.startswith("Output only"):
        out["readOnly"] = True
    only_via = ONLY_VIA.search(description)
    if only_via:
        out["onlyVia"] = only_via.group(1)
    required = spec.get("annotations", {}).get("required")
    if required:
        out["required"] = required
    return out


def refs(spec):
    if "$ref" in spec:
        yield spec["$ref"]
    for key in ("items", "additionalProperties"):
        if key in spec:
            yield from refs(spec[key])


def trim(doc, roots):
    schemas = doc["schemas"]
    keep, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        props = schemas[name].get("properties", {})
        keep[name] = {"properties": {k: field(v) for k, v in props.items()}}
        for v in props.values():
            todo.extend(refs(v))
    return {"revision": doc["revision"], "schemas": dict(sorted(keep.items()))}


def main():
    src, dst = sys.argv[1], sys.argv[2]
    for api, roots in (("compute", COMPUTE_ROOTS), ("container", CONTAINER_ROOTS)):
        with open(f"{src}/{api}.v1.json") as f:
            doc = json.load(f)
        with open(f"{dst}/{api}.json", "w") as f:
            json.dump(trim(doc, roots), f, separators=(",", ":"), sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
