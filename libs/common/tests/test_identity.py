from pdfchat.common.identity import Identity


def test_identity_survives_a_metadata_round_trip() -> None:
    original = Identity(tenant_id="acme", user_id="ann", roles=("admin", "reader"), request_id="r1")
    assert Identity.from_metadata(original.to_metadata()) == original


def test_metadata_without_tenant_has_no_identity() -> None:
    assert Identity.from_metadata([("x-pdfchat-user", "ann")]) is None
    assert Identity.from_metadata(None) is None


def test_missing_request_id_is_generated() -> None:
    found = Identity.from_metadata([("x-pdfchat-tenant", "acme"), ("x-pdfchat-tenant-extra", b"x")])
    assert found is not None
    assert found.request_id
