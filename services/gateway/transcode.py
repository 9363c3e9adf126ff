"""HTTP/JSON ⇄ protobuf, by the canonical JSON mapping, and gRPC status → HTTP error.

Requests: the JSON body (for `body: "*"`), the path variables and the query parameters become one
request message, as the `google.api.http` rules say (path variables win over the body; query
parameters fill the fields neither binds). Unknown fields, a JSON key given twice, a value of the
wrong type, a body that is not a JSON object or not UTF-8, all are INVALID_ARGUMENT naming the field:
the gateway never guesses. Responses are the canonical JSON (lowerCamelCase names, enums by name,
int64 as strings, default values omitted). Errors are the JSON form of google.rpc.Status, with its
details, under the HTTP status https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto
pairs with each code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.common.errors import FieldViolation, InvalidArgument
from services.gateway.routes import Route

# google/rpc/code.proto: the HTTP status each code maps to.
HTTP_STATUS = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.UNAUTHENTICATED: 401,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
}
STATUS_DETAILS_KEY = "grpc-status-details-bin"
JSON = "application/json"


@dataclass(frozen=True)
class HttpError:
    """An error as the client gets it: HTTP status, google.rpc.Status, and a Retry-After when known."""

    http_status: int
    status: status_pb2.Status
    retry_after_s: int | None = None

    def body(self) -> bytes:
        return _dump(_status_dict(self.status))


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidArgument(
                f"the JSON key {key!r} appears twice in one object",
                [FieldViolation(key, "given twice in one JSON object", "DUPLICATE_IN_REQUEST")],
            )
        result[key] = value
    return result


def _parse_body(raw: bytes) -> dict[str, object]:
    """The request body as a JSON object; InvalidArgument for anything else."""
    if not raw.strip():
        return {}
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_no_constant)
    except InvalidArgument:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "the body is not UTF-8" if isinstance(exc, UnicodeDecodeError) else "the body is not valid JSON"
        raise InvalidArgument(reason, [FieldViolation("", reason, "FIELD_FORMAT_INVALID")]) from None
    if not isinstance(value, dict):
        message = "the body must be a JSON object"
        raise InvalidArgument(message, [FieldViolation("", message, "FIELD_FORMAT_INVALID")])
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python accepts them, JSON does not


def _put(tree: dict[str, object], field_path: str, value: object, *, replace: bool) -> None:
    """Set `tree[a][b]... = value` for the dotted `field_path`."""
    *parents, leaf = field_path.split(".")
    node = tree
    for name in parents:
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise InvalidArgument(
                f"{field_path}: {name} is not a message",
                [FieldViolation(field_path, f"{name} is not a message", "FIELD_FORMAT_INVALID")],
            )
        node = child
    if not replace and leaf in node:
        raise InvalidArgument(
            f"{field_path} is given twice",
            [FieldViolation(field_path, "given in the body and in the query, or twice", "DUPLICATE_IN_REQUEST")],
        )
    node[leaf] = value


def _repeated(route: Route, field_path: str) -> bool:
    descriptor = route.request_type.DESCRIPTOR
    field = None
    for name in field_path.split("."):
        field = (descriptor.fields_by_name.get(name) or _by_json_name(descriptor, name)) if descriptor else None
        if field is None:
            return False
        descriptor = field.message_type
    return field is not None and field.is_repeated


def _by_json_name(descriptor, name: str):
    return next((f for f in descriptor.fields if f.json_name == name), None)


def build_request(route: Route, body: bytes, path: Mapping[str, str], query: Mapping[str, list[str]]) -> Message:
    """The request message of `route` from the HTTP request's parts; InvalidArgument when it is not one."""
    tree: dict[str, object] = _parse_body(body) if route.body == "*" else {}
    if route.body not in ("", "*"):
        tree = {route.body: _parse_body(body)}
    if route.body != "*":
        for name, values in query.items():
            if _repeated(route, name):
                _put(tree, name, list(values), replace=False)
            elif len(values) == 1:
                _put(tree, name, values[0], replace=False)
            else:
                raise InvalidArgument(
                    f"{name} is given {len(values)} times",
                    [FieldViolation(name, "a single value is expected", "DUPLICATE_IN_REQUEST")],
                )
    for match_name, field_path in route.variables:
        _put(tree, field_path, path[match_name], replace=True)
    request = route.request_type()
    try:
        json_format.ParseDict(tree, request, ignore_unknown_fields=False, max_recursion_depth=32)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        # ParseError names the field ("Failed to parse qr field: ..."); the text carries no value of ours.
        description = str(exc)[:300]
        raise InvalidArgument(
            "the request does not match its JSON mapping", [FieldViolation("", description, "FIELD_FORMAT_INVALID")]
        ) from None
    return request


def render(message: Message) -> bytes:
    """The canonical JSON of a response message."""
    return _dump(json_format.MessageToDict(message))


def _dump(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _status_dict(status: status_pb2.Status) -> dict[str, object]:
    try:
        return json_format.MessageToDict(status)
    except (json_format.SerializeToJsonError, TypeError, KeyError):
        # A detail of a type this process does not know: the code and message still reach the client.
        return json_format.MessageToDict(status_pb2.Status(code=status.code, message=status.message))


def from_rpc_error(error: grpc.aio.AioRpcError) -> HttpError:
    """The client's view of a failed call: the service's own google.rpc.Status when it sent one."""
    status = None
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except DecodeError:
                status = None
    code = error.code().value[0]
    if status is None or status.code != code:
        status = status_pb2.Status(code=code, message=error.details() or "")
    return from_status(status)


def from_status(status: status_pb2.Status) -> HttpError:
    retry_after = None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry_after = max(1, -(-info.retry_delay.ToNanoseconds() // 1_000_000_000))
    return HttpError(HTTP_STATUS.get(status.code, 500), status, retry_after)
