"""RetryInfo in RESOURCE_EXHAUSTED answers: the delay a client is told to wait is never zero."""

from __future__ import annotations

from google.rpc import error_details_pb2

from services.common.errors import ResourceExhausted


def _delay_ms(retry_after_s: float) -> int:
    infos = [d for d in ResourceExhausted("slow down", retry_after_s=retry_after_s).details()]
    (info,) = [d for d in infos if isinstance(d, error_details_pb2.RetryInfo)]
    return info.retry_delay.ToMilliseconds()


def test_a_delay_under_a_millisecond_is_rounded_up_not_down_to_zero():
    assert _delay_ms(0.0004) == 1
    assert _delay_ms(0.0) == 1
    assert _delay_ms(0.0501) == 51
    assert _delay_ms(2.0) == 2000
