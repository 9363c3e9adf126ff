"""Reading google.rpc details out of a failed call, for assertions."""

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def error_reason(err: grpc.aio.AioRpcError) -> str:
    for detail in rpc_status.from_call(err).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


def violations(err: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """(field, reason) of every BadRequest.FieldViolation."""
    out = []
    for detail in rpc_status.from_call(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [(v.field, v.reason) for v in bad.field_violations]
    return out


def localized_message(err: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(locale, message) of the google.rpc.LocalizedMessage detail; ("", "") without one."""
    for detail in rpc_status.from_call(err).details:
        localized = error_details_pb2.LocalizedMessage()
        if detail.Unpack(localized):
            return localized.locale, localized.message
    return "", ""


def localized_violations(err: grpc.aio.AioRpcError) -> list[tuple[str, str, str]]:
    """(field, locale, localized message) of every BadRequest.FieldViolation."""
    out = []
    for detail in rpc_status.from_call(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [(v.field, v.localized_message.locale, v.localized_message.message) for v in bad.field_violations]
    return out
