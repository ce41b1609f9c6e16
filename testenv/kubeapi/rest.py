"""The verbs every kind shares: get, list, create, update, patch, bind.

This is the generic registry store of the real server, in short: system
metadata, generateName, admission, validation, optimistic concurrency,
no-op detection, generation, the main resource/status split, finalizers.
Deletion lives in `deletion.py`. Everything raises `errors.ApiError`.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import errors as e
from . import patch as patching
from .admission import admit_create
from .clock import timestamp
from .gvk import GroupKind
from .jsonobj import JsonObject, clone
from .listing import paginate, selection
from .pod_validation import validate_binding
from .pods import bind
from .resources import Registry, ResourceType
from .store import Store

# utilrand.String's alphabet: no vowels, no look-alikes, so generated names never spell words.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SYSTEM_FIELDS = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def generate_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


@dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""


def present(rt: ResourceType, stored: JsonObject) -> JsonObject:
    """A copy of a stored object as `rt`'s API version serves it (apiVersion and kind first)."""
    body = rt.strategy.from_storage(clone(stored))
    out: dict[str, Any] = {"apiVersion": rt.api_version, "kind": rt.kind}
    out.update((k, v) for k, v in body.items() if k not in ("apiVersion", "kind"))
    return out


def _spec_part(obj: JsonObject, rt: ResourceType) -> JsonObject:
    """What generation tracks: everything but metadata, and status when it has its own endpoint."""
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if rt.has_status else set())
    return {k: v for k, v in obj.items() if k not in skip}


class Rest:
    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry

    # --- reads ------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> JsonObject:
        return present(rt, self.existing(rt, namespace, name))

    def existing(self, rt: ResourceType, namespace: str, name: str) -> JsonObject:
        stored = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        if stored is None:
            raise e.not_found(rt.group_resource, name)
        return stored

    def list(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> JsonObject:
        chosen = selection(rt, namespace, query)
        def view(stored: JsonObject) -> JsonObject | None:
            shown = present(rt, stored)
            return shown if chosen.matches(shown) else None

        page = paginate(self.store.items(rt.storage_key, namespace), query, str(self.store.resource_version),
                        not chosen.filters, self.store.oldest_replayable(rt.storage_key), view)
        metadata: dict[str, Any] = {"resourceVersion": page.resource_version}
        if page.continue_token:
            metadata["continue"] = page.continue_token
        if page.remaining is not None:
            metadata["remainingItemCount"] = page.remaining
        return list_body(rt, page.items, metadata)

    # --- create -----------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: Any, opts: WriteOptions) -> JsonObject:
        obj = self._decode(rt, body)
        meta = obj["metadata"]
        _place(rt, meta, namespace)
        sent_version = str(meta.get("resourceVersion") or "")
        rt.strategy.default(obj, rt)
        admit_create(self.store, rt, obj)
        for field in (*_SYSTEM_FIELDS, "managedFields", "selfLink"):
            meta.pop(field, None)
        rt.strategy.prepare_for_create(obj, rt)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._fresh_name(rt, meta)
        errs = rt.strategy.validate(obj, rt)
        if errs:
            raise e.invalid_object(rt.group_kind, meta.get("name", ""), errs)
        if not opts.dry_run and sent_version.isascii() and sent_version.isdigit() and int(sent_version) > 0:
            # etcd3 store.Create's ErrResourceVersionSetOnCreate, a plain error: ErrorToAPIStatus
            # makes it a 500 with no reason (a version it cannot parse, "-1", is let through).
            raise e.unknown(500, "resourceVersion should not be set on objects to be created")
        there = self.store.get(rt.storage_key, meta.get("namespace", ""), meta["name"])
        if there is not None:
            error = e.already_exists(rt.group_resource, meta["name"])
            if there["metadata"].get("deletionTimestamp"):  # store.go Create
                error.status["message"] = f"object is being deleted: {error.status['message']}"
            raise error
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = timestamp()
        if rt.strategy.tracks_generation:
            meta["generation"] = 1
        if opts.dry_run:
            return present(rt, rt.strategy.to_storage(obj))
        return present(rt, self.store.create(rt.storage_key, rt.strategy.to_storage(obj)))

    def _fresh_name(self, rt: ResourceType, meta: JsonObject) -> str:
        for _ in range(8):
            name = generate_name(meta["generateName"])
            if self.store.get(rt.storage_key, meta.get("namespace", ""), name) is None:
                return name
        return name

    def _decode(self, rt: ResourceType, body: Any) -> JsonObject:
        if not isinstance(body, dict):
            raise e.bad_request(f"the object provided is unrecognized (must be of type {rt.kind})")
        _check_type_meta(rt, body)
        obj = rt.strategy.decode(clone(body), rt)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        obj.setdefault("metadata", {})
        return obj

    # --- update -----------------------------------------------------------------------------

    def update(
        self, rt: ResourceType, namespace: str, name: str, body: Any, opts: WriteOptions, subresource: str = ""
    ) -> tuple[JsonObject, bool]:
        """PUT; returns (object, created). In the real server's order: the handler decodes the
        body and checks its name and namespace against the URL (400); storage checks the body's
        UID against what is stored, or against nothing (409); a missing object is a 404 unless
        the kind allows create on update; then the resourceVersion (409, or 422 when absent
        where the kind needs it), then validation."""
        new = self._decode(rt, body)
        _check_name(rt, new["metadata"], namespace, name)
        stored = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        _check_uid(rt, namespace, name, new["metadata"], stored)
        if stored is None:
            if rt.strategy.allow_create_on_update and not subresource:
                new["metadata"].pop("resourceVersion", None)
                return self.create(rt, namespace, new, opts), True
            raise e.not_found(rt.group_resource, name)
        return self._write_update(rt, namespace, name, new, stored, opts, subresource), False

    def _write_update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        new: JsonObject,
        old_stored: JsonObject,
        opts: WriteOptions,
        subresource: str,
    ) -> JsonObject:
        old = present(rt, old_stored)
        meta = new["metadata"]
        _place(rt, meta, namespace)
        self._check_version(rt, name, meta, old["metadata"])
        rt.strategy.default(new, rt)
        _keep_system_fields(meta, old["metadata"])
        if subresource == "status":
            new = rt.strategy.prepare_for_status_update(new, old, rt)
            errs = rt.strategy.validate_status_update(new, old, rt)
        elif subresource == "finalize":
            new = {
                **old,
                "spec": {**old.get("spec", {}), "finalizers": (new.get("spec") or {}).get("finalizers") or []},
            }
            errs = []
        else:
            rt.strategy.prepare_for_update(new, old, rt)
            errs = rt.strategy.validate_update(new, old, rt)
        if errs:
            raise e.invalid_object(rt.group_kind, name, errs)
        return self._commit_update(rt, new, old, opts)

    def _check_version(self, rt: ResourceType, name: str, meta: JsonObject, old_meta: JsonObject) -> None:
        given = meta.get("resourceVersion", "")
        if not given:
            if not rt.strategy.allow_unconditional_update:
                # store.go Update: the kind named is the resource (GroupKind{Group, Resource},
                # "leases.coordination.k8s.io"), the value a uint64 printed with %#v.
                raise e.invalid_object(
                    GroupKind(rt.group, rt.plural),
                    name,
                    [e.invalid("metadata.resourceVersion", e.GoSyntax("0x0"), "must be specified for an update")],
                )
            meta["resourceVersion"] = old_meta["resourceVersion"]
        elif given != old_meta["resourceVersion"]:
            raise e.stale_update(rt.group_resource, name)

    def _commit_update(self, rt: ResourceType, new: JsonObject, old: JsonObject, opts: WriteOptions) -> JsonObject:
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return old  # a no-op write neither bumps the resourceVersion nor emits an event
        if rt.strategy.tracks_generation and _spec_part(new, rt) != _spec_part(old, rt):
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        if _finalized(new["metadata"], old["metadata"]):
            stored = rt.strategy.to_storage(new)
            if opts.dry_run:
                return present(rt, stored)
            return present(rt, self.store.delete(rt.storage_key, stored))
        if opts.dry_run:
            return present(rt, rt.strategy.to_storage(new))
        return present(rt, self.store.update(rt.storage_key, rt.strategy.to_storage(new)))

    # --- patch ------------------------------------------------------------------------------

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        opts: WriteOptions,
        subresource: str = "",
    ) -> tuple[JsonObject, bool]:
        """PATCH of any supported type; returns (object, created). Apply creates when absent."""
        content_type = _patch_type(rt, content_type)
        if content_type == patching.APPLY and not opts.field_manager:
            raise e.invalid_object(
                GroupKind("meta.k8s.io", "PatchOptions"),
                "",
                [e.required("fieldManager", "is required for apply patch")],
            )
        body = patching.parse_body(raw, content_type)
        old_stored = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        if old_stored is None:
            if content_type == patching.APPLY and not subresource:
                return self.create(rt, namespace, _named(body, name), opts), True
            raise e.not_found(rt.group_resource, name)
        current = present(rt, old_stored)
        try:
            patched = patching.apply(content_type, current, body)
        except patching.PatchError as err:
            raise e.ApiError(e.status_body(422, "Invalid", str(err))) from err
        new = self._decode(rt, patched)
        _place(rt, new["metadata"], namespace)  # the patcher's order: the namespace, then checkName
        _check_name(rt, new["metadata"], namespace, name)
        return self._write_update(rt, namespace, name, new, old_stored, opts, subresource), False

    # --- binding ----------------------------------------------------------------------------

    def bind(self, pods: ResourceType, namespace: str, name: str, body: Any, opts: WriteOptions) -> JsonObject:
        """POST pods/{name}/binding; answers a Success Status with code 201."""
        binding_rt = self.registry.lookup("", "v1", "bindings")
        assert binding_rt is not None
        binding = self._decode(binding_rt, body)
        if binding["metadata"].get("name", name) != name:
            raise e.bad_request("name in URL does not match name in Binding object")
        binding_ns = binding["metadata"].get("namespace", namespace)
        if binding_ns != namespace:
            raise e.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        errs = validate_binding(binding)
        if errs:
            raise e.invalid_object(binding_rt.group_kind, name, errs)
        pod = self.existing(pods, namespace, name)
        bound = bind(pod, binding)
        if not opts.dry_run:
            self.store.update(pods.storage_key, bound)
        return e.success_status(201)


def list_body(rt: ResourceType, items: list[JsonObject], metadata: JsonObject) -> JsonObject:
    # Built-in lists carry items without apiVersion/kind, as the typed Go encoder writes them.
    if rt.builtin:
        items = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in items]
    return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": metadata, "items": items}


def _check_type_meta(rt: ResourceType, body: JsonObject) -> None:
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if kind and kind != rt.kind:
        raise e.bad_request(
            f'{kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"the object provided is unrecognized (must be of type {rt.kind})"
        )
    if api_version and api_version != rt.api_version and rt.builtin:
        raise e.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
        )
    if api_version and not rt.builtin and api_version.split("/")[0] != rt.group:
        raise e.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
        )


def _check_name(rt: ResourceType, meta: JsonObject, namespace: str, name: str) -> None:
    """The update handler's checkName (endpoints/handlers/rest.go), before storage is asked."""
    given = meta.get("name")
    if not given or not isinstance(given, str):
        raise e.bad_request(f"the name of the object ({name} based on URL) was undeterminable: name must be provided")
    if given != name:
        raise e.bad_request(f"the name of the object ({given}) does not match the name on the URL ({name})")
    given_namespace = meta.get("namespace")
    if rt.namespaced and namespace and given_namespace and given_namespace != namespace:
        raise e.bad_request(f"the namespace of the object ({given_namespace}) does not match the namespace on "
                            f"the request ({namespace})")


def _check_uid(rt: ResourceType, namespace: str, name: str, meta: JsonObject, stored: JsonObject | None) -> None:
    """A body's UID is a precondition (rest.DefaultUpdatedObjectInfo) that etcd3's
    GuaranteedUpdate checks against the stored object, or the empty one when there is none,
    before anything else; InterpretUpdateError makes its StorageError a 409."""
    uid = meta.get("uid")
    there = (stored or {}).get("metadata", {}).get("uid", "")
    if not uid or uid == there:
        return
    prefix = rt.plural if rt.builtin else f"{rt.group}/{rt.plural}"
    key = f"/registry/{prefix}/{namespace}/{name}" if rt.namespaced else f"/registry/{prefix}/{name}"
    raise e.conflict(rt.group_resource, name,
                     f"StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, "
                     f"AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in object meta: {there}")


def _place(rt: ResourceType, meta: JsonObject, namespace: str) -> None:
    """Fill the namespace from the URL; a different one in the body is a 400, like the real server."""
    if not rt.namespaced:
        meta.pop("namespace", None)
        return
    given = meta.get("namespace", "")
    if given and given != namespace:
        raise e.bad_request("the namespace of the provided object does not match the namespace sent on the request")
    meta["namespace"] = namespace


def _keep_system_fields(meta: JsonObject, old_meta: JsonObject) -> None:
    if not meta.get("uid"):
        meta["uid"] = old_meta.get("uid")
    for field in ("creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if field in old_meta:
            meta[field] = old_meta[field]
        else:
            meta.pop(field, None)
    meta.pop("managedFields", None)
    meta.pop("selfLink", None)


def _finalized(meta: JsonObject, old_meta: JsonObject) -> bool:
    """An update that removes the last finalizer of an object whose deletion is due deletes it."""
    return (
        bool(meta.get("deletionTimestamp"))
        and not meta.get("finalizers")
        and bool(old_meta.get("finalizers"))
        and meta.get("deletionGracePeriodSeconds", 0) == 0
    )


def _patch_type(rt: ResourceType, content_type: str) -> str:
    base = content_type.split(";")[0].strip()
    accepted = [patching.JSON_PATCH, patching.MERGE, patching.APPLY]
    if rt.builtin:
        accepted.insert(2, patching.STRATEGIC)
    if base not in accepted:
        raise e.unsupported_media_type(base, accepted)
    return base


def _named(body: Any, name: str) -> Any:
    if isinstance(body, dict):
        body = clone(body)
        body.setdefault("metadata", {}).setdefault("name", name)
    return body


def parse_json_body(raw: bytes) -> Any:
    """Request bodies are JSON; YAML is accepted too because kubectl can send it."""
    try:
        return json.loads(raw or b"null")
    except ValueError as err:
        raise e.bad_request(f"error decoding JSON: {err}") from err
