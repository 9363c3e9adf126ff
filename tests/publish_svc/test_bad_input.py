"""GetCertificateQr over real gRPC: a control character in `certificate_id` is INVALID_ARGUMENT.

A NUL reached Postgres (which refuses NUL in text) and ended in INTERNAL, found by fuzzing.
"""

import grpc
import pytest

from services.gen.covidtest.publish.v1 import publish_service_pb2 as ppb
from tests.conftest import bearer
from tests.grpc_errors import violations
from tests.publish_svc.conftest import new_partner


@pytest.mark.parametrize("certificate_id", ["URN:UVCI:01:VN:\x00#A", "\x00", "URN:UVCI:01:VN:AB\x1f#C", "\x7f"])
async def test_a_control_character_in_a_certificate_id_is_invalid_argument(platform, database_url, certificate_id):
    partner = await new_partner(database_url, personal_data_access=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.publish.GetCertificateQr(
            ppb.GetCertificateQrRequest(certificate_id=certificate_id, format=ppb.QR_IMAGE_FORMAT_PNG),
            metadata=bearer(partner["token"]),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("certificate_id", "FIELD_FORMAT_INVALID") in violations(err.value)


async def test_an_unknown_certificate_id_is_still_not_found(platform, database_url):
    partner = await new_partner(database_url, personal_data_access=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await platform.publish.GetCertificateQr(
            ppb.GetCertificateQrRequest(certificate_id="URN:UVCI:01:VN:NOPE#A", format=ppb.QR_IMAGE_FORMAT_PNG),
            metadata=bearer(partner["token"]),
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
