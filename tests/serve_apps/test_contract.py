"""The HTTP contract, generated from the endpoint's own /openapi.json.

Property-based (hypothesis strategies built from the document's own schemas by
`from_schema` below, plus mutations and arbitrary JSON around them), over every
operation the document lists, auth on. hypothesis-jsonschema would do the
drawing, but its 0.23 breaks on this hypothesis (6.170: private internals it
uses are gone), so `from_schema` covers the JSON Schema subset FastAPI emits.
For every case:

- no 5xx, and no status the document does not list for that operation;
- a request that breaks the document (judged by jsonschema against the same
  schemas) is refused (400/422), whatever else is wrong with it;
- a request that keeps to it, with the right token, known items and within the
  server's limits, is answered 200, and every 200 body validates against the
  documented response schema (strict: no undocumented field).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

pytestmark = pytest.mark.slow  # Ray and Serve over HTTP

TOKEN = "contract-test-token"
MAX_K, MAX_HISTORY = 50, 40
CASES = 1200
# Valid JSON holding a lone UTF-16 surrogate: the 422 naming the unknown item echoes it
# back, and UTF-8 cannot encode it (a 500 until the app escaped non-ASCII output).
SURROGATE = b'{"history": ["\\ud800"], "k": 1}'


@pytest.fixture(scope="module")
def url(ray_session, beauty_root, tmp_path_factory, write_bundles, free_port):
    from ray import serve
    from serve_apps.recommender import AppArgs, build_app

    bundle = write_bundles(beauty_root, tmp_path_factory.mktemp("b"))["tiger"]
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = AppArgs(
        model_uri=str(bundle), num_cpus=0.5, max_k=MAX_K, max_history=MAX_HISTORY,
        auth_token_env="SIDREC_CONTRACT_TOKEN",
        runtime_env={"env_vars": {"SIDREC_CONTRACT_TOKEN": TOKEN}},
    )  # fmt: skip
    serve.run(build_app(args), name="contract", route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def spec(url):
    return requests.get(f"{url}/openapi.json", timeout=10).json()


@pytest.fixture(scope="module")
def catalog(beauty_root):
    from sidrec.data import load_items

    return load_items(beauty_root).column("source_id").to_pylist()


class Contract:
    """The document's schemas as validators and strategies."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.components = spec.get("components", {})

    def schema(self, schema: dict) -> dict:
        """A standalone schema: the fragment plus the components its $refs point into."""
        return {**schema, "components": self.components}

    def valid(self, schema: dict, value) -> bool:
        return Draft202012Validator(self.schema(schema)).is_valid(value)

    def errors(self, schema: dict, value) -> list[str]:
        return [e.message for e in Draft202012Validator(self.schema(schema)).iter_errors(value)]

    def operation(self, path: str, method: str) -> dict:
        return self.spec["paths"][path][method]

    def statuses(self, path: str, method: str) -> set[int]:
        return {int(s) for s in self.operation(path, method)["responses"]}

    def body_schema(self, path: str, method: str) -> dict:
        return self.operation(path, method)["requestBody"]["content"]["application/json"]["schema"]

    def response_schema(self, path: str, method: str, status: int) -> dict | None:
        content = self.operation(path, method)["responses"][str(status)].get("content", {})
        return content.get("application/json", {}).get("schema")

    def params(self, path: str, method: str, where: str) -> list[dict]:
        return [p for p in self.operation(path, method).get("parameters", []) if p["in"] == where]


def from_schema(schema: dict, components: dict) -> st.SearchStrategy:
    """Values valid under schema: the subset of JSON Schema that FastAPI / pydantic
    emit ($ref, anyOf, object, array, string, integer, number, boolean, null)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: from_schema(components["schemas"][name], components))
    if "anyOf" in schema:
        return st.one_of([from_schema(s, components) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, components) for k, v in props.items() if k in required},
            optional={k: from_schema(v, components) for k, v in props.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {}), components),
            min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 50), 50),
        )  # fmt: skip
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 30))
    if kind == "integer":
        low = schema.get("minimum", schema.get("exclusiveMinimum", -(2**40) - 1) + 1)
        high = schema.get("maximum", schema.get("exclusiveMaximum", 2**40 + 1) - 1)
        return st.integers(low, high)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise ValueError(f"from_schema: no strategy for {schema}")


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)  # fmt: skip


def recommend_cases(contract: Contract, catalog: list[str]):
    """(body or raw bytes, is_json) for POST /v1/recommend."""
    schema = contract.body_schema("/v1/recommend", "post")
    drawn = from_schema(schema, contract.components)
    known = st.lists(st.sampled_from(catalog[:300]), max_size=MAX_HISTORY + 5)
    # Schema-valid bodies, half of them with real catalog ids (else nearly all are 422).
    valid = drawn | drawn.flatmap(lambda b: known.map(lambda h: {**b, "history": h}))
    keys = st.sampled_from([*schema.get("properties", {}), "histroy", "extra"])
    mutated = st.one_of(
        st.tuples(valid, keys, json_values).map(lambda t: {**t[0], t[1]: t[2]}),
        st.tuples(valid, keys).map(lambda t: {k: v for k, v in t[0].items() if k != t[1]}),
    )
    raw = st.one_of(
        st.binary(max_size=40),
        valid.map(lambda b: json.dumps(b).encode()[:-1]),  # truncated JSON
        st.just(SURROGATE),
    )
    return st.one_of(
        valid.map(lambda b: (b, True)),
        mutated.map(lambda b: (b, True)),
        json_values.map(lambda b: (b, True)),
        raw.map(lambda b: (b, False)),
    )


def search_cases(contract: Contract):
    """Query parameters for GET /v1/items: drawn from their schemas, or broken."""
    params = {p["name"]: p for p in contract.params("/v1/items", "get", "query")}
    out = {}
    for name, p in params.items():
        good = from_schema(p["schema"], contract.components)
        # Strings with no digit or space never parse as numbers: wrong for an integer.
        bad = st.text(alphabet="abcxyz-_.", max_size=6) | st.integers(-5, 500) | st.just("")
        out[name] = st.one_of(good, good, bad, st.none())  # None: left out
    return st.fixed_dictionaries(out)


def query_is_valid(contract: Contract, params: dict) -> bool:
    for p in contract.params("/v1/items", "get", "query"):
        value = params.get(p["name"])
        if value is None:
            if p.get("required"):
                return False
            continue
        if p["schema"].get("type") == "integer":
            try:
                value = int(str(value))
            except ValueError:
                return False
        else:
            value = str(value)
        if not contract.valid(p["schema"], value):
            return False
    return True


def test_openapi_documents_every_route_and_status(spec):
    paths = spec["paths"]
    assert {"/v1/recommend", "/v1/items", "/v1/items/{item_id}", "/v1/model", "/healthz"} <= set(
        paths
    )
    for path in ("/v1/recommend", "/v1/items", "/v1/items/{item_id}"):
        [op] = paths[path].values()
        assert {"200", "400", "401", "404", "422", "429", "503"} <= set(op["responses"]), path
    # Strict both ways: no unknown field in a request or a response.
    schemas = spec["components"]["schemas"]
    for name in ("RecommendRequest", "RecommendResponse", "RecommendedItem", "Explanation",
                 "CodeLabel", "ItemInfo", "ItemSearchResponse"):  # fmt: skip
        assert schemas[name]["additionalProperties"] is False, name


def test_generated_requests_keep_the_documented_contract(url, spec, catalog):
    contract = Contract(spec)
    good = {"Authorization": f"Bearer {TOKEN}"}
    auth = st.sampled_from(["good"] * 8 + ["none", "wrong"])
    case = st.one_of(
        st.tuples(st.just("recommend"), recommend_cases(contract, catalog)),
        st.tuples(st.just("search"), search_cases(contract)),
        st.tuples(st.just("item"), st.sampled_from(catalog) | st.text(min_size=1, max_size=16)),
        st.tuples(st.just("model"), st.none()),
        st.tuples(st.just("healthz"), st.none()),
    )
    known = set(catalog)
    session = requests.Session()
    seen: dict[tuple[str, int], int] = {}

    @settings(max_examples=CASES, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=case, who=auth)
    @example(case=("recommend", (SURROGATE, False)), who="good")
    def check(case, who):
        kind, arg = case
        headers = {"none": {}, "wrong": {"Authorization": "Bearer nope"}, "good": good}[who]
        if kind == "recommend":
            path, method = "/v1/recommend", "post"
            body, is_json = arg
            data = json.dumps(body).encode() if is_json else body
            r = session.post(f"{url}{path}", data=data, timeout=60,
                             headers={**headers, "content-type": "application/json"})  # fmt: skip
            if not is_json:  # raw bytes: judged by what they parse to, if anything
                try:
                    body, is_json = json.loads(data), True
                except ValueError:
                    pass
            valid = is_json and contract.valid(contract.body_schema(path, method), body)
            servable = valid and (
                who == "good" and body.get("k", 10) <= MAX_K
                and len(body["history"]) <= MAX_HISTORY and set(body["history"]) <= known
            )  # fmt: skip
        elif kind == "search":
            path, method = "/v1/items", "get"
            params = {k: v for k, v in arg.items() if v is not None}
            r = session.get(f"{url}{path}", params=params, headers=headers, timeout=30)
            valid = query_is_valid(contract, arg)
            servable = valid and who == "good"
        else:
            path, method = {"item": "/v1/items/{item_id}", "model": "/v1/model",
                            "healthz": "/healthz"}[kind], "get"  # fmt: skip
            target = path.replace("{item_id}", quote(arg, safe="")) if arg else path
            r = session.get(f"{url}{target}", headers=headers, timeout=30)
            valid = True
            servable = kind == "healthz" or (who == "good" and (kind == "model" or arg in known))
        seen[(kind, r.status_code)] = seen.get((kind, r.status_code), 0) + 1
        what = f"{method.upper()} {path} {arg!r} ({who} token) -> {r.status_code} {r.text[:300]}"
        assert r.status_code < 500, what
        assert r.status_code in contract.statuses(path, method), f"undocumented status: {what}"
        if not valid:
            assert r.status_code in (400, 422), f"a request breaking the schema got in: {what}"
        if servable:
            assert r.status_code == 200, f"a request keeping to the schema was refused: {what}"
        if r.status_code == 200 and (schema := contract.response_schema(path, method, 200)):
            errors = contract.errors(schema, r.json())
            assert not errors, f"the 200 body breaks its schema: {errors[:3]} ({what})"

    check()
    total = sum(seen.values())
    print(f"{total} cases:", dict(sorted(seen.items())))
    assert total >= 1000
    for kind in ("recommend", "search", "item", "model", "healthz"):
        assert seen.get((kind, 200), 0) > 0, (kind, seen)
    for status in (401, 422):
        assert sum(n for (_, s), n in seen.items() if s == status) > 50, seen
