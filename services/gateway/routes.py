"""The HTTP routes of the public RPCs, read from their `google.api.http` annotations in protos/.

The mapping is written once, in the contract, where Envoy's gRPC-JSON transcoder and grpc-gateway read
it too; this module turns it into routes for the gateway. It accepts the subset of the path template
syntax the contract uses — literal segments, single-segment variables `{field}` or `{field=*}` and a
trailing `:verb` — and refuses anything else at start-up, so a template the gateway would serve
differently from Envoy can never be added silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

# Importing the generated modules registers their descriptors (and the http option) in the default pool.
from services.gen.covidtest.publish.v1 import publish_service_pb2  # noqa: F401
from services.gen.covidtest.result.v1 import result_service_pb2  # noqa: F401
from services.gen.covidtest.verify.v1 import verify_service_pb2  # noqa: F401

RESULT_SERVICE = "covidtest.result.v1.ResultService"
PUBLISH_SERVICE = "covidtest.publish.v1.PublishService"
VERIFY_SERVICE = "covidtest.verify.v1.VerifyService"
# The services the gateway serves. AdminService is not among them: operators use gRPC (or the CLI) only.
PUBLIC_SERVICES = (RESULT_SERVICE, PUBLISH_SERVICE, VERIFY_SERVICE)

_LITERAL = re.compile(r"[A-Za-z0-9._~-]+")
_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*)(?:=\*)?\}")


# Set by each handler to the template it serves (a route, a page file): the only per-request label of the
# gateway's metrics, never a value from the request.
ROUTE = web.RequestKey("route", str)


class TemplateError(ValueError):
    """A path template outside the subset the gateway serves."""


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC."""

    service: str  # full name of the gRPC service, e.g. "covidtest.verify.v1.VerifyService"
    method: str  # e.g. "Verify"
    http_method: str  # "GET", "POST", "PUT", "PATCH" or "DELETE"
    template: str  # as in the contract, e.g. "/v1/samples/{sample_id}"; also the metric label
    pattern: str  # the aiohttp route pattern, e.g. "/v1/samples/{v0:[^/:]+}"
    variables: tuple[tuple[str, str], ...]  # (aiohttp match name, request field path)
    body: str  # "" (no body; other fields from the query), "*" (the whole request) or a field name
    request_type: type[Message]
    response_type: type[Message]

    @property
    def rpc(self) -> str:
        """The gRPC method path, e.g. "/covidtest.verify.v1.VerifyService/Verify"."""
        return f"/{self.service}/{self.method}"


def parse_template(template: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A path template → (aiohttp pattern, variables); TemplateError outside the supported subset."""
    if not template.startswith("/") or template == "/":
        raise TemplateError(f"{template!r}: a template starts with / and has at least one segment")
    path, verb = template, ""
    last = template.rsplit("/", 1)[1]
    if ":" in last.split("}")[-1]:  # a verb follows the last segment (not a colon inside a variable)
        path, _, verb = template.rpartition(":")
        if not _LITERAL.fullmatch(verb):
            raise TemplateError(f"{template!r}: the verb must be a literal")
    pieces: list[str] = []
    variables: list[tuple[str, str]] = []
    for segment in path[1:].split("/"):
        if _LITERAL.fullmatch(segment):
            pieces.append(segment)
            continue
        variable = _VARIABLE.fullmatch(segment)
        if variable is None:
            raise TemplateError(f"{template!r}: segment {segment!r} is neither a literal nor {{field}}")
        name = f"v{len(variables)}"
        variables.append((name, variable.group(1)))
        pieces.append(f"{{{name}:[^/:]+}}")
    pattern = "/" + "/".join(pieces) + (f":{verb}" if verb else "")
    return pattern, tuple(variables)


def _bindings(rule: http_pb2.HttpRule) -> list[http_pb2.HttpRule]:
    return [rule, *rule.additional_bindings]


def _route(method: MethodDescriptor, rule: http_pb2.HttpRule) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind not in ("get", "post", "put", "patch", "delete"):
        raise TemplateError(f"{method.full_name}: HTTP pattern {kind!r} is not served")
    template = getattr(rule, kind)
    pattern, variables = parse_template(template)
    request = method.input_type
    for _, field_path in variables:
        _check_field_path(request, field_path, method.full_name)
    if rule.body not in ("", "*"):
        _check_field_path(request, rule.body, method.full_name)
    if rule.response_body:
        raise TemplateError(f"{method.full_name}: response_body is not served")
    return Route(
        service=method.containing_service.full_name,
        method=method.name,
        http_method=kind.upper(),
        template=template,
        pattern=pattern,
        variables=variables,
        body=rule.body,
        request_type=message_factory.GetMessageClass(method.input_type),
        response_type=message_factory.GetMessageClass(method.output_type),
    )


def _check_field_path(message, field_path: str, where: str) -> None:
    for name in field_path.split("."):
        field = message.fields_by_name.get(name) if message is not None else None
        if field is None:
            raise TemplateError(f"{where}: the request has no field {field_path!r}")
        message = field.message_type


def public_routes(services: tuple[str, ...] = PUBLIC_SERVICES) -> list[Route]:
    """Every HTTP binding of the unary RPCs of `services` that carry a `google.api.http` option.
    Streaming RPCs (the result feed) have none: they are served over gRPC only."""
    pool = descriptor_pool.Default()
    routes = []
    for service_name in services:
        for method in pool.FindServiceByName(service_name).methods:
            if not method.GetOptions().HasExtension(annotations_pb2.http):
                continue
            if method.client_streaming or method.server_streaming:
                raise TemplateError(f"{method.full_name}: a streaming RPC cannot be served over HTTP/JSON here")
            routes += [_route(method, rule) for rule in _bindings(method.GetOptions().Extensions[annotations_pb2.http])]
    seen: dict[tuple[str, str], str] = {}
    for route in routes:
        key = (route.http_method, route.pattern)
        if key in seen:
            raise TemplateError(f"{route.rpc} and {seen[key]} both bind {route.http_method} {route.template}")
        seen[key] = route.rpc
    return routes
