"""The routes come from the contract's google.api.http annotations, within the template subset the gateway
serves (and Envoy serves the same way); every public unary RPC has one."""

import pytest
from google.protobuf import descriptor_pool

from services.gateway.routes import PUBLIC_SERVICES, TemplateError, parse_template, public_routes

# Served over gRPC only, on purpose: the feed is a server stream, and its Ack belongs to the stream.
GRPC_ONLY = {
    "covidtest.publish.v1.PublishService.StreamResultEvents",
    "covidtest.publish.v1.PublishService.AckResultEvents",
}


def test_every_public_unary_rpc_has_an_http_binding():
    bound = {f"{route.service}.{route.method}" for route in public_routes()}
    methods = {
        method.full_name
        for service in PUBLIC_SERVICES
        for method in descriptor_pool.Default().FindServiceByName(service).methods
    }
    assert methods - bound == GRPC_ONLY
    assert bound <= methods


def test_no_admin_rpc_is_served():
    assert not [r for r in public_routes() if ".admin." in r.service]


def test_the_bindings_the_readme_documents():
    routes = {(r.http_method, r.template): r.rpc for r in public_routes()}
    assert routes[("POST", "/v1/verify")] == "/covidtest.verify.v1.VerifyService/Verify"
    assert routes[("POST", "/v1/verify:batch")] == "/covidtest.verify.v1.VerifyService/VerifyBatch"
    assert routes[("GET", "/v1/rules")] == "/covidtest.verify.v1.VerifyService/GetRules"
    assert routes[("GET", "/v1/trust-list")] == "/covidtest.verify.v1.VerifyService/GetTrustList"
    assert routes[("POST", "/v1/results:record")] == "/covidtest.result.v1.ResultService/RecordResults"
    assert routes[("GET", "/v1/feed/status")] == "/covidtest.publish.v1.PublishService/GetFeedStatus"
    # Personal data never travels in a URL (access logs keep URLs): the citizen lookup is a POST body.
    assert routes[("POST", "/v1/citizens:lookup")] == "/covidtest.publish.v1.PublishService/GetCitizenResults"


@pytest.mark.parametrize(
    "template, pattern, variables",
    [
        ("/v1/rules", "/v1/rules", ()),
        ("/v1/verify:batch", "/v1/verify:batch", ()),
        ("/v1/samples/{sample_id}", "/v1/samples/{v0:[^/:]+}", (("v0", "sample_id"),)),
        ("/v1/a/{x.y=*}/b/{z}:go", "/v1/a/{v0:[^/:]+}/b/{v1:[^/:]+}:go", (("v0", "x.y"), ("v1", "z"))),
    ],
)
def test_supported_templates(template, pattern, variables):
    assert parse_template(template) == (pattern, variables)


@pytest.mark.parametrize(
    "template",
    ["v1/rules", "/", "/v1/{name=**}", "/v1/{name=shelves/*}", "/v1/x:{verb}", "/v1/{Name}", "/v1/a b", "/v1//x"],
)
def test_templates_outside_the_subset_are_refused_at_start_up(template):
    with pytest.raises(TemplateError):
        parse_template(template)
