"""Schemathesis against the live OpenAPI (`/openapi.json`) and GraphQL (`/graphql`) schemas of
the running stack (two API replicas, the real engine, archiver and Redis).

Every operation of each schema gets a bounded Hypothesis run (positive and negative data,
`MAX_EXAMPLES` cases in all), and every response goes through two sets of checks:

- `not_a_server_error`: no 5xx (for GraphQL also no resolver failure reported as an error);
- conformance: the status code and the content type are documented for the operation and
  the body matches the documented schema (for GraphQL: valid JSON of the right shape, no
  null in a non-null field).

One run per operation feeds both tests, so a known documentation gap (marked xfail, strict)
never hides a server error in the same operation. The schemas are fetched from the running
stack, so the operations are looked up by name inside the tests (the stack starts after
collection); operations the schemas gain later are fuzzed by a catch-all test.

A second group of tests provokes, deterministically, each status the API really returns
and checks that the OpenAPI document declares it (and the error body it documents): a guard
on the error contract, which must list every status the API really sends.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.schemas import APIOperation, BaseSchema

from shared.stack import Stack
from tests.fuzz.conftest import FUZZ_SUMMARY, JSON

# Cases per operation (half positive, half negative data where the operation has inputs).
MAX_EXAMPLES = 50

SERVER_CHECKS: list[schemathesis.CheckFunction] = [schemathesis.checks.not_a_server_error]
OPENAPI_CONFORMANCE: list[schemathesis.CheckFunction] = [
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
GRAPHQL_CONFORMANCE: list[schemathesis.CheckFunction] = [
    schemathesis.checks.response_schema_conformance
]


# schemathesis yields its operations with their four type parameters (parameters, response,
# schema, ...) left open: get_all_operations answers bare APIOperations.
Operation = APIOperation[Any, Any, Any, Any]
OperationCase = schemathesis.Case[Operation]


def operations(schema: BaseSchema) -> list[Operation]:
    """Every operation of `schema`; one it could not read fails here, with its error."""
    found: list[Operation] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        found.append(result.ok())
    return found


def _xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


OPENAPI_OPERATIONS = [
    "POST /orders",
    "GET /orders",
    "PUT /orders/{order_id}",
    "DELETE /orders/{order_id}",
    "GET /orders/{order_id}",
    "GET /trades",
    "GET /orderbook",
]
GRAPHQL_OPERATIONS = [
    "Query.order",
    "Query.orders",
    "Query.trades",
    "Query.orderBook",
    "Mutation.placeOrder",
    "Mutation.modifyOrder",
    "Mutation.cancelOrder",
]


# -- running schemathesis ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What one operation's run saw: responses by status, and the failures of each check set."""

    label: str
    examples: dict[str, int] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def report(self, failures: list[str]) -> str:
        unique = sorted(set(failures))
        shown = "\n\n".join(unique[:5])
        return f"{self.label}: {len(failures)} failing cases, {len(unique)} distinct:\n{shown}"


def _describe(case: OperationCase, response: schemathesis.Response, failure: Exception) -> str:
    title = getattr(failure, "title", type(failure).__name__)
    code = getattr(failure, "code", "")
    command = case.as_curl_command()
    return f"[{code} {title}] {response.status_code} {response.text[:200]!r}\n  {command[:400]}"


def _has_inputs(operation: Operation) -> bool:
    containers = ("path_parameters", "query", "headers", "cookies", "body")
    return any(len(getattr(operation, name, ())) for name in containers)


def fuzz(operation: Operation, conformance: list[schemathesis.CheckFunction]) -> Outcome:
    outcome = Outcome(operation.label)
    session = requests.Session()

    def exercise(case: OperationCase) -> None:
        response = case.call(session=session, timeout=30)
        outcome.statuses[response.status_code] += 1
        for bucket, checks in (
            (outcome.server_errors, SERVER_CHECKS),
            (outcome.violations, conformance),
        ):
            try:
                case.validate_response(response, checks=checks)
            except FailureGroup as group:
                bucket.extend(_describe(case, response, f) for f in group.exceptions)

    modes = [GenerationMode.POSITIVE]
    if _has_inputs(operation):
        modes.append(GenerationMode.NEGATIVE)
    for mode in modes:
        count = 0

        @settings(
            max_examples=MAX_EXAMPLES // len(modes),
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: OperationCase) -> None:
            nonlocal count
            count += 1
            exercise(case)

        with contextlib.suppress(Unsatisfiable):  # no negative data for these inputs
            run()
        outcome.examples[mode.value] = count
    session.close()
    return outcome


class Runs:
    """One schemathesis run per operation, shared by the server-error and conformance tests."""

    def __init__(
        self, load: Callable[[], BaseSchema], conformance: list[schemathesis.CheckFunction]
    ) -> None:
        self._load = load
        self._schema: BaseSchema | None = None
        self.conformance = conformance
        self.outcomes: dict[str, Outcome] = {}

    @property
    def schema(self) -> BaseSchema:
        if self._schema is None:
            self._schema = self._load()
        return self._schema

    def labels(self) -> set[str]:
        return {operation.label for operation in operations(self.schema)}

    def __getitem__(self, label: str) -> Outcome:
        if label not in self.outcomes:
            (operation,) = [op for op in operations(self.schema) if op.label == label]
            self.outcomes[label] = fuzz(operation, self.conformance)
        return self.outcomes[label]

    def summary(self, kind: str) -> str:
        done = self.outcomes.values()
        examples = sum(sum(o.examples.values()) for o in done)
        statuses = sum((o.statuses for o in done), Counter[int]())
        errors = sum(len(o.server_errors) for o in done)
        violating = [o.label for o in done if o.violations]
        return (
            f"{kind}: {len(self.outcomes)} operations, {examples} cases, responses by status "
            f"{dict(sorted(statuses.items()))}, {errors} server errors, "
            f"operations violating the schema: {violating or 'none'}"
        )


@pytest.fixture(scope="module")
def openapi_runs(base_url: str) -> Iterator[Runs]:
    runs = Runs(
        lambda: schemathesis.openapi.from_url(f"{base_url}/openapi.json"), OPENAPI_CONFORMANCE
    )
    yield runs
    if runs.outcomes:
        FUZZ_SUMMARY.append(runs.summary("OpenAPI"))


@pytest.fixture(scope="module")
def graphql_runs(base_url: str) -> Iterator[Runs]:
    runs = Runs(lambda: schemathesis.graphql.from_url(f"{base_url}/graphql"), GRAPHQL_CONFORMANCE)
    yield runs
    if runs.outcomes:
        FUZZ_SUMMARY.append(runs.summary("GraphQL"))


def _names(params: Sequence[str | pytest.ParameterSet]) -> set[str]:
    names = set()
    for p in params:
        name = p if isinstance(p, str) else p.values[0]
        assert isinstance(name, str), p
        names.add(name)
    return names


def test_operations_listed_here_exist(openapi_runs: Runs, graphql_runs: Runs) -> None:
    assert _names(OPENAPI_OPERATIONS) <= openapi_runs.labels()
    assert set(GRAPHQL_OPERATIONS) <= graphql_runs.labels()


@pytest.mark.parametrize("kind", ["openapi", "graphql"])
def test_operations_added_later_are_fuzzed_too(request: pytest.FixtureRequest, kind: str) -> None:
    """Operations the schemas gained after this file was written get the same run and both
    check sets (list them above to give each its own test)."""
    runs: Runs = request.getfixturevalue(f"{kind}_runs")
    listed = _names(OPENAPI_OPERATIONS) if kind == "openapi" else set(GRAPHQL_OPERATIONS)
    failures = []
    for label in sorted(runs.labels() - listed):
        outcome = runs[label]
        failures += outcome.server_errors + outcome.violations
    assert not failures, "\n\n".join(failures[:5])


# -- OpenAPI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [_names([p]).pop() for p in OPENAPI_OPERATIONS])
def test_openapi_no_server_error(openapi_runs: Runs, label: str) -> None:
    outcome = openapi_runs[label]
    assert sum(outcome.examples.values()) > 0, outcome.examples
    assert not outcome.server_errors, outcome.report(outcome.server_errors)


@pytest.mark.parametrize("label", OPENAPI_OPERATIONS)
def test_openapi_responses_conform(openapi_runs: Runs, label: str) -> None:
    outcome = openapi_runs[label]
    assert outcome.statuses, "no response seen"
    assert not outcome.violations, outcome.report(outcome.violations)


# -- GraphQL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("label", GRAPHQL_OPERATIONS)
def test_graphql_no_server_error(graphql_runs: Runs, label: str) -> None:
    outcome = graphql_runs[label]
    assert sum(outcome.examples.values()) > 0, outcome.examples
    assert not outcome.server_errors, outcome.report(outcome.server_errors)


@pytest.mark.parametrize("label", GRAPHQL_OPERATIONS)
def test_graphql_responses_conform(graphql_runs: Runs, label: str) -> None:
    outcome = graphql_runs[label]
    assert outcome.statuses == Counter({200: sum(outcome.examples.values())}), outcome.statuses
    assert not outcome.violations, outcome.report(outcome.violations)


def test_fuzzing_left_the_service_serving(
    openapi_runs: Runs,
    graphql_runs: Runs,
    stack: Stack,
    still_serving: Callable[[], None],
    empty_book: None,
) -> None:
    """Whatever the runs above did (they place, modify and cancel real orders), every service
    process is alive and the API still serves a place-and-read-back across replicas."""
    dead = {name: p.returncode for name, p in stack.processes.items() if p.poll() is not None}
    assert not dead, dead
    still_serving()


# -- every status the API really returns is in the contract ----------------------------------

BIG_BODY = b'{"side": 1, "price": 1, "quantity": 1, "client_order_id": "' + b"x" * 70_000 + b'"}'


@dataclass(frozen=True)
class Provoke:
    """A request that makes `method path` answer `status` (`route` is the OpenAPI path)."""

    method: str
    url: str
    route: str
    status: int
    kwargs: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.method} {self.url} {self.status}"


PROVOKED = [
    Provoke("POST", "/orders", "/orders", 422, {"json": {"side": 1, "price": "x", "quantity": 1}}),
    Provoke("POST", "/orders", "/orders", 400, {"content": b"{not json", "headers": JSON}),
    Provoke("POST", "/orders", "/orders", 413, {"content": BIG_BODY, "headers": JSON}),
    Provoke(
        "POST", "/orders", "/orders", 415, {"content": b"x", "headers": {"content-type": "text/a"}}
    ),
    # a market order on an empty book: the engine rejects it with no_liquidity
    Provoke(
        "POST", "/orders", "/orders", 409, {"json": {"side": 1, "type": "market", "quantity": 1}}
    ),
    Provoke("PUT", "/orders/1", "/orders/{order_id}", 422, {"json": {"price": "x"}}),
    Provoke("PUT", "/orders/1", "/orders/{order_id}", 400, {"content": b"{", "headers": JSON}),
    Provoke("PUT", "/orders/1", "/orders/{order_id}", 413, {"content": BIG_BODY, "headers": JSON}),
    Provoke("PUT", "/orders/1", "/orders/{order_id}", 415, {"content": b"{}"}),
    Provoke("GET", "/orders/0", "/orders/{order_id}", 422, {}),
    Provoke("GET", "/orders/987654321987", "/orders/{order_id}", 404, {}),
    Provoke("DELETE", "/orders/0", "/orders/{order_id}", 422, {}),
    Provoke("GET", "/orders", "/orders", 422, {"params": {"limit": 0}}),
    Provoke("GET", "/orderbook", "/orderbook", 422, {"params": {"depth": 51}}),
]
# (GraphQL is described by its own schema, fuzzed below, not by the OpenAPI document.)
UNDOCUMENTED: dict[tuple[str, str, int], str] = {}


def _provoked_params() -> list[pytest.ParameterSet]:
    params = []
    for p in PROVOKED:
        reason = UNDOCUMENTED.get((p.method, p.route, p.status))
        params.append(pytest.param(p, id=p.id, marks=[_xfail(reason)] if reason else []))
    return params


@pytest.fixture(scope="module")
def openapi_document(base_url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    return document


@pytest.mark.usefixtures("empty_book")
@pytest.mark.parametrize("provoke", PROVOKED, ids=[p.id for p in PROVOKED])
def test_api_really_returns(http: httpx.Client, provoke: Provoke) -> None:
    """The precondition of the next test: each request does produce its status."""
    response = http.request(provoke.method, provoke.url, **provoke.kwargs)
    assert response.status_code == provoke.status, response.text


@pytest.mark.parametrize("provoke", _provoked_params())
def test_returned_status_is_documented(openapi_document: dict[str, Any], provoke: Provoke) -> None:
    responses = openapi_document["paths"][provoke.route][provoke.method.lower()]["responses"]
    assert str(provoke.status) in responses, sorted(responses)


READS_AND_WRITES = [
    ("POST", "/orders"),
    ("PUT", "/orders/{order_id}"),
    ("DELETE", "/orders/{order_id}"),
    ("GET", "/orders/{order_id}"),
    ("GET", "/orders"),
    ("GET", "/trades"),
    ("GET", "/orderbook"),
]


@pytest.mark.parametrize(("method", "route"), READS_AND_WRITES)
def test_unavailable_is_documented(
    openapi_document: dict[str, Any], method: str, route: str
) -> None:
    """503 (engine or store not answering) cannot be provoked here without stopping a
    service the whole session shares, so only the document is checked."""
    responses = openapi_document["paths"][route][method.lower()]["responses"]
    assert "503" in responses, sorted(responses)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = document  # any JSON value, as json.loads answers it
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def test_documented_error_body_names_the_fields_sent(
    http: httpx.Client, openapi_document: dict[str, Any]
) -> None:
    response = http.get("/orders", params={"limit": 0})
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "message", "errors"}, body
    documented = openapi_document["paths"]["/orders"]["get"]["responses"]["422"]
    schema = _resolve(openapi_document, documented["content"]["application/json"]["schema"])
    assert set(body) <= set(schema.get("properties", {})), json.dumps(schema)[:300]
