"""What GetCheckpointBundle chooses for a device (BundleStore.answer), without a server."""

from datetime import UTC, datetime, timedelta

from services.verify_svc.bundle import BundleStore, LatestBundle

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def store(latest: int, deltas: dict[int, bytes], full: bytes = b"F" * 1000) -> BundleStore:
    held = BundleStore()
    held.latest = LatestBundle(latest, NOW, NOW + timedelta(hours=24), full)
    held._deltas = deltas
    return held


def test_deltas_in_order_when_every_one_is_held_and_together_smaller_than_the_full_bundle():
    held = store(5, {3: b"c", 4: b"d", 5: b"e"})
    assert held.answer(2).deltas == [b"c", b"d", b"e"] and held.answer(2).full is None
    assert held.answer(4).deltas == [b"e"]
    up_to_date = held.answer(5)
    assert up_to_date.version == 5 and up_to_date.full is None and not up_to_date.deltas


def test_the_full_bundle_when_a_delta_is_missing_larger_or_the_version_unknown():
    assert store(5, {4: b"d", 5: b"e"}).answer(2).full  # delta 3 no longer held
    assert store(5, {3: b"c" * 600, 4: b"d" * 600, 5: b"e"}).answer(2).full  # deltas outweigh the bundle
    assert store(5, {5: b"e"}).answer(0).full  # a new device
    assert store(5, {5: b"e"}).answer(9).full  # a version from the future (another platform, a reset)


def test_a_device_far_behind_costs_no_walk_over_its_versions():
    held = store(10**15, {10**15: b"e"})
    assert held.answer(1).full  # answered at once, not after 10**15 dictionary lookups
    assert BundleStore().answer(1) is None  # nothing issued yet
