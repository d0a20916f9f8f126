"""The part of kustomize that deploy/k8s uses, to render its kustomizations offline in the
tests (no kubectl or kustomize binary is on PyPI; CI installs only Python packages).

Supported, with kustomize's meaning: ``resources`` (files, and directories holding a
kustomization: bases), ``namespace`` (set on every object; a Namespace object is
renamed to it, as kustomize's namespace transformer does), ``labels``
with ``pairs`` (metadata labels only: ``includeSelectors``/``includeTemplates`` are
refused), ``images`` (``name`` -> ``newName``/``newTag`` in every container and init
container of a pod template), and ``patches`` with a ``target`` (kind, name) and an
inline JSON 6902 ``patch`` (``add``, ``replace``, ``remove``). Any other field, or a
strategic-merge patch, is refused: a kustomization this cannot render is a test failure,
not a silently different rendering.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "labels", "images", "patches"}


def build(directory: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomization fields not supported: {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs.extend(build(path))
        else:
            with path.open() as f:
                docs.extend(copy.deepcopy(d) for d in yaml.safe_load_all(f) if d)
    if "namespace" in spec:
        for doc in docs:
            meta = doc.setdefault("metadata", {})
            # As kustomize does: a Namespace object is renamed to it, others moved into it.
            meta["name" if doc["kind"] == "Namespace" else "namespace"] = spec["namespace"]
    for entry in spec.get("labels", []):
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise ValueError("labels with includeSelectors/includeTemplates: not supported")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
    for image in spec.get("images", []):
        for container in containers(docs):
            if image_name(container["image"]) == image["name"]:
                name = image.get("newName", image["name"])
                tag = image.get("newTag")
                container["image"] = f"{name}:{tag}" if tag else name
    for patch in spec.get("patches", []):
        target = patch["target"]
        matched = [
            d
            for d in docs
            if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
        ]
        if len(matched) != 1:
            raise ValueError(f"patch target {target} matches {len(matched)} objects")
        operations = yaml.safe_load(patch["patch"])
        if not isinstance(operations, list):
            raise ValueError("only JSON 6902 patches (a list of operations) are supported")
        for operation in operations:
            apply(matched[0], operation)
    return docs


def containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        found.extend(pod.get("initContainers", []))
        found.extend(pod.get("containers", []))
    return found


def image_name(image: str) -> str:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def apply(doc: dict[str, Any], operation: dict[str, Any]) -> None:
    op = operation["op"]
    if op not in ("add", "replace", "remove"):
        raise ValueError(f"JSON patch op {op!r} not supported")
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in operation["path"].split("/")[1:]]
    parent: Any = doc
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op == "replace":
            parent[index] = operation["value"]
        else:
            del parent[index]
        return
    if op in ("remove", "replace") and last not in parent:
        raise ValueError(f"JSON patch {op} of a missing member: {operation['path']}")
    if op == "remove":
        del parent[last]
    else:
        parent[last] = operation["value"]
