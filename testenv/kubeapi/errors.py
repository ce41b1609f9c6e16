"""API errors shaped exactly like kube-apiserver's `Status` objects.

Clients (lightkube's `ApiError.status`, client-go's `StatusError`) read
`code`, `reason`, `message` and `details`; tests written against this
stand-in assert on them, so each builder mirrors the wording of
k8s.io/apimachinery/pkg/api/errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .gvk import GroupKind, GroupResource


class ApiError(Exception):
    """An error the server answers with a `Status` body and `code`."""

    def __init__(self, status: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status.get("message", ""))
        self.status = status
        self.headers = headers or {}

    @property
    def code(self) -> int:
        return int(self.status["code"])

    @property
    def reason(self) -> str:
        return str(self.status.get("reason", ""))


def status_body(
    code: int,
    reason: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A failure `Status` in the server's key order (details omitted when None)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def success_status(code: int = 200, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `Status` a delete or binding answers with when it returns no object."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _details(gr: GroupResource, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if gr.group:
        details["group"] = gr.group
    details["kind"] = gr.resource
    return details


def _named(gr: GroupResource, name: str) -> str:
    return f'{gr} "{name}"' if name else str(gr)


def not_found(gr: GroupResource, name: str) -> ApiError:
    return ApiError(status_body(404, "NotFound", f"{_named(gr, name)} not found", _details(gr, name)))


def already_exists(gr: GroupResource, name: str) -> ApiError:
    return ApiError(status_body(409, "AlreadyExists", f"{_named(gr, name)} already exists", _details(gr, name)))


def conflict(gr: GroupResource, name: str, cause: str) -> ApiError:
    message = f"Operation cannot be fulfilled on {_named(gr, name)}: {cause}"
    return ApiError(status_body(409, "Conflict", message, _details(gr, name)))


def stale_update(gr: GroupResource, name: str) -> ApiError:
    return conflict(
        gr,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def forbidden(gr: GroupResource, name: str, cause: str) -> ApiError:
    return ApiError(status_body(403, "Forbidden", f"{_named(gr, name)} is forbidden: {cause}", _details(gr, name)))


def bad_request(message: str) -> ApiError:
    return ApiError(status_body(400, "BadRequest", message))


def unauthorized() -> ApiError:
    return ApiError(status_body(401, "Unauthorized", "Unauthorized"))


def method_not_allowed() -> ApiError:
    return ApiError(
        status_body(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})
    )


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    message = f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}"
    return ApiError(status_body(415, "UnsupportedMediaType", message, {}))


class PageNotFound(ApiError):
    """A path no API serves (an unknown group or version, an unknown non-resource path): the
    server's mux answers with Go's http.NotFound, plain text, not a Status."""

    TEXT = "404 page not found\n"


def page_not_found() -> ApiError:
    return PageNotFound(status_body(404, "NotFound", PageNotFound.TEXT.strip()))


def resource_not_found() -> ApiError:
    """What the server says for an unknown resource within a group/version it serves."""
    return ApiError(status_body(404, "NotFound", "the server could not find the requested resource", {}))


def expired(message: str) -> ApiError:
    """410 from the watch cache (reason Expired, not Gone) for a too old resourceVersion."""
    return ApiError(status_body(410, "Expired", message))


def gone(message: str) -> ApiError:
    return ApiError(status_body(410, "Gone", message))


def unknown(code: int, message: str) -> ApiError:
    """An error the server had not turned into a Status (apierrors.ErrorToAPIStatus's default):
    its text, no reason, no details."""
    body = status_body(code, "", message)
    del body["reason"]
    return ApiError(body)


def internal(message: str) -> ApiError:
    return ApiError(
        status_body(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})
    )


# --- field errors and 422 Invalid ------------------------------------------------------------

_TYPE_TEXT = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueNotFound": "Not found",
}

# Types whose message never repeats the bad value (field.Error.ErrorBody).
_VALUE_HIDDEN = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"}

_OMIT = object()


@dataclass(frozen=True)
class FieldError:
    """One entry of a validation error list (k8s.io/apimachinery/pkg/util/validation/field)."""

    reason: str
    field: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        """The message without the field path, as `StatusCause.message`."""
        text = _TYPE_TEXT[self.reason]
        if self.reason not in _VALUE_HIDDEN and self.value is not _OMIT:
            text += f": {_go_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


class GoSyntax(str):
    """A bad value Go prints with ``%#v`` (field.Error's fallback, e.g. a uint64 0 is ``0x0``): as is."""


def _go_value(value: Any) -> str:
    """Render a bad value the way Go's %q / %v do in field errors."""
    if isinstance(value, GoSyntax):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return _go_quote(value)
    return str(value)


def _go_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, _OMIT, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, value, detail)


def forbidden_field(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, _OMIT, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, value)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    quoted = ", ".join(_go_quote(s) for s in supported)
    return FieldError("FieldValueNotSupported", path, value, f"supported values: {quoted}")


def too_long(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueTooLong", path, _OMIT, detail)


def not_found_field(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueNotFound", path, value)


def invalid_object(gk: GroupKind, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid; the message aggregates errors like utilerrors.NewAggregate."""
    texts = _unique([str(e) for e in errors])
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details: dict[str, Any] = {"name": name} if name else {}
    if gk.group:
        details["group"] = gk.group
    details["kind"] = gk.kind
    details["causes"] = [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errors]
    message = f'{gk} "{name}" is invalid: {summary}'
    return ApiError(status_body(422, "Invalid", message, details))


def _unique(items: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
