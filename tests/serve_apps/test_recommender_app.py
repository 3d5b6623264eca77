"""The endpoint for real: a local Ray, Serve over HTTP, models registered in a real
MLflow SQLite store. Answers, errors, a 1,000-request fuzz with no 5xx, the
shipped config.yaml with an in-place knob change, an alias swap under load with
no failed request, and a replica killed under load."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidrec import tracking
from sidrec.serving.loadgen import run_load

# End to end (jobs, Ray, Serve over HTTP): the full suite and CI run it;
# `pytest -m "not slow"` skips it while editing.
pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]
NAME = "sidrec-tiger-beauty"


@pytest.fixture(scope="module")
def registry(beauty_root, tmp_path_factory, write_bundles):
    """Two TIGER versions (alias prod -> v1) and a SASRec in a fresh MLflow store."""
    import mlflow

    store = tmp_path_factory.mktemp("mlflow")
    v1 = write_bundles(beauty_root, store / "b1", seed=0)
    v2 = write_bundles(beauty_root, store / "b2", seed=1)
    uri = tracking.configure(store)
    for name, folder in [
        (NAME, v1["tiger"]),
        (NAME, v2["tiger"]),
        ("sidrec-sasrec-beauty", v1["sasrec"]),
        ("sidrec-h2rec-beauty", v1["h2rec"]),
        ("sidrec-sidgpt-beauty", v1["sidgpt"]),
        ("sidrec-lmrec-beauty", v1["lmrec"]),
    ]:
        with tracking.start_run(store, "beauty", f"{name}-test", {}, {}) as run:
            mlflow.log_artifacts(str(folder), artifact_path="bundle")
            tracking.register_model(run.info.run_id, "bundle", name, alias=None)
    tracking.set_alias(NAME, "prod", 1)
    tracking.set_alias("sidrec-sasrec-beauty", "prod", 1)
    tracking.set_alias("sidrec-h2rec-beauty", "prod", 1)
    tracking.set_alias("sidrec-sidgpt-beauty", "prod", 1)
    tracking.set_alias("sidrec-lmrec-beauty", "prod", 1)
    return {"uri": uri, "store": store}


@pytest.fixture(scope="module")
def serve_url(ray_session, registry, free_port):
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def deploy(serve_url, registry, prefix, model, **args):
    from ray import serve
    from serve_apps.recommender import AppArgs, build_app

    app_args = AppArgs(
        model_uri=f"models:/{model}@prod",
        tracking_uri=registry["uri"],
        num_cpus=0.5,
        **args,
    )
    serve.run(build_app(app_args), name=prefix, route_prefix=f"/{prefix}")
    return f"{serve_url}/{prefix}"


@pytest.fixture(scope="module")
def tiger_url(serve_url, registry):
    return deploy(serve_url, registry, "tiger", NAME, max_k=50)


@pytest.fixture(scope="module")
def catalog(beauty_root):
    from sidrec.data import load_items

    return load_items(beauty_root).column("source_id").to_pylist()


def post(url, body, **kw):
    return requests.post(f"{url}/v1/recommend", json=body, timeout=60, **kw)


def test_recommends_real_items_with_sids_and_paths(tiger_url, catalog):
    r = post(tiger_url, {"history": catalog[10:15], "k": 5, "exclude_seen": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": NAME, "version": "1"} and not body["cold_start"]
    assert len(body["items"]) == 5 and body["history_used"] == 5
    for item in body["items"]:
        assert item["item_id"] in catalog and item["item_id"] not in catalog[10:15]
        assert len(item["sid"]) >= 3 and isinstance(item["path"], list) and item["title"]
        detail = requests.get(f"{tiger_url}/v1/items/{item['item_id']}", timeout=10).json()
        assert detail["sid"] == item["sid"] and detail["path"] == item["path"]
    cold = post(tiger_url, {"history": [], "k": 3}).json()
    assert cold["cold_start"] and len(cold["items"]) == 3
    model = requests.get(f"{tiger_url}/v1/model", timeout=10).json()
    assert model["version"] == "1" and model["generative"] and model["limits"]["max_k"] == 50
    assert requests.get(f"{tiger_url}/healthz", timeout=10).json()["status"] == "ok"
    spec = requests.get(f"{tiger_url}/openapi.json", timeout=10).json()
    assert {"/v1/recommend", "/v1/items/{item_id}", "/v1/model", "/healthz"} <= set(spec["paths"])
    # every status the API can answer is documented
    documented = set(spec["paths"]["/v1/recommend"]["post"]["responses"])
    assert {"200", "400", "401", "404", "422", "429", "503"} <= documented


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ({"history": ["NOT-AN-ITEM", "ALSO-NOT"], "k": 5}, "NOT-AN-ITEM"),
        ({"history": [], "k": 51}, "max_k=50"),
        ({"history": [], "k": 0}, "greater than or equal to 1"),
        ({"history": "B000", "k": 5}, "valid list"),
        ({"k": 5}, "history"),
        ({"history": [], "exclude_seeen": True}, "exclude_seeen"),
        ({"history": ["x"] * 1001}, "max_history=1000"),
        # strict types: no int -> bool, no str -> int coercion
        ({"history": [], "exclude_seen": 0}, "valid boolean"),
        ({"history": [], "k": "5"}, "valid integer"),
    ],
)
def test_bad_requests_get_422_naming_the_problem(tiger_url, body, expect):
    r = post(tiger_url, body)
    assert r.status_code == 422 and expect in r.text, r.text


def test_malformed_json_and_unknown_item_are_4xx(tiger_url):
    r = requests.post(
        f"{tiger_url}/v1/recommend",
        data=b'{"history": [',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422
    assert requests.get(f"{tiger_url}/v1/items/NOPE", timeout=10).status_code == 404


# Bodies that look like the schema, and bodies that do not look like anything.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def fuzz_bodies(catalog):
    known = st.sampled_from(catalog[:500])
    shaped = st.fixed_dictionaries(
        {"history": st.lists(known | st.text(max_size=12), max_size=30)},
        optional={
            "k": st.integers(-3, 120) | json_scalars,
            "exclude_seen": st.booleans() | json_scalars,
            "extra": json_values,
        },
    )
    valid = st.fixed_dictionaries(
        {"history": st.lists(known, max_size=30)},
        optional={"k": st.integers(1, 50), "exclude_seen": st.booleans()},
    )
    return valid | shaped | json_values


def test_fuzzed_requests_never_get_a_5xx(tiger_url, fuzz_bodies):
    statuses: dict[int, int] = {}
    session = requests.Session()

    @settings(
        max_examples=1000,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=fuzz_bodies, raw=st.booleans(), item=st.text(max_size=20))
    def hit(body, raw, item):
        if raw:  # not JSON at all, or JSON of the wrong shape
            data = json.dumps(body).encode()[:-1] if isinstance(body, dict) else str(body).encode()
            r = session.post(f"{tiger_url}/v1/recommend", data=data, timeout=60,
                             headers={"content-type": "application/json"})  # fmt: skip
        else:
            r = session.post(f"{tiger_url}/v1/recommend", json=body, timeout=60)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (body, r.text)
        # An empty id is GET /v1/items/, redirected to the search, which needs q: 422.
        assert session.get(
            f"{tiger_url}/v1/items/{requests.utils.quote(item, safe='')}", timeout=10
        ).status_code in ((200, 404) if item else (422,))

    hit()
    assert sum(statuses.values()) >= 1000
    assert statuses.get(200, 0) > 100 and statuses.get(422, 0) > 100, (
        statuses
    )  # both kinds exercised


def _load_in_thread(url, bodies, concurrency, duration_s, **kw):
    box = {}
    thread = threading.Thread(
        target=lambda: box.setdefault(
            "result",
            asyncio.run(
                run_load(
                    f"{url}/v1/recommend", bodies, concurrency, duration_s, keep_answers=True, **kw
                )
            ),
        )
    )
    thread.start()
    return thread, box


def config_yaml_apps(registry, **knobs) -> dict:
    """serve_apps/config.yaml as shipped, pointed at the test registry, one replica."""
    import yaml

    config = yaml.safe_load((TESTS.parent / "serve_apps" / "config.yaml").read_text())
    [app] = config["applications"]
    app["name"], app["route_prefix"] = "yaml", "/yaml"
    app["args"].update(model_uri=f"models:/{NAME}@prod", tracking_uri=registry["uri"], num_cpus=0.5)
    app["args"].pop("autoscaling")
    app["deployments"][0]["user_config"].update(knobs)
    return {"applications": [app]}


def test_config_yaml_deploys_and_knobs_change_in_place(serve_url, registry, catalog):
    """What `serve deploy serve_apps/config.yaml` does, through the same controller
    call the dashboard's REST API makes: a user_config edit reconfigures the live
    replica instead of replacing it."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    client = _get_global_client()
    client.deploy_apps(ServeDeploySchema(**config_yaml_apps(registry)), _blocking=True)
    url = f"{serve_url}/yaml"
    before = requests.get(f"{url}/v1/model", timeout=10).json()
    assert before["knobs"]["beam_width"] == 20 and before["version"] == "1"
    new = config_yaml_apps(registry, beam_width=30, max_batch_size=8)
    client.deploy_apps(ServeDeploySchema(**new), _blocking=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        after = requests.get(f"{url}/v1/model", timeout=10).json()
        if after["knobs"]["beam_width"] == 30:
            break
        time.sleep(0.5)
    assert after["knobs"]["max_batch_size"] == 8
    assert after["replica_pid"] == before["replica_pid"]  # reconfigured, not replaced
    assert post(url, {"history": catalog[:3], "k": 25}).status_code == 200
    from ray import serve

    serve.delete("yaml")


def test_alias_swap_under_load_fails_no_request(serve_url, registry, catalog):
    # alias_poll_s: the replicas follow the registry alias on their own.
    url = deploy(serve_url, registry, "swap", NAME, knobs={"alias_poll_s": 0.5})
    assert requests.get(f"{url}/v1/model", timeout=10).json()["version"] == "1"
    bodies = [{"history": catalog[i : i + 4], "k": 10} for i in range(0, 400, 4)]
    thread, box = _load_in_thread(url, bodies, concurrency=8, duration_s=12)
    time.sleep(3)
    tracking.set_alias(NAME, "prod", 2)
    thread.join(timeout=60)
    result = box["result"]
    versions = [a["model"]["version"] for a in result.answers]
    assert set(result.statuses) == {200}, result.statuses
    assert versions[0] == "1" and versions[-1] == "2", set(versions)
    # once the new version answers, the old one never does again (one replica)
    first_v2 = versions.index("2")
    assert set(versions[first_v2:]) == {"2"}
    tracking.set_alias(NAME, "prod", 1)
    from ray import serve

    serve.delete("swap")


def test_a_killed_replica_costs_no_request_with_one_client_retry(serve_url, registry, catalog):
    """The contract: a recommendation is idempotent, so a client resends once a request
    that dies with its replica (500/502/504, dropped, or no answer in 10 s). Serve
    routes the resend to the survivor: every request is then answered 200."""
    import ray
    from ray import serve

    url = deploy(serve_url, registry, "kill", "sidrec-sasrec-beauty", num_replicas=2)
    bodies = [{"history": catalog[i : i + 4], "k": 10} for i in range(0, 400, 4)]
    thread, box = _load_in_thread(
        url, bodies, concurrency=8, duration_s=10, retry_once=True, timeout_s=10.0
    )
    time.sleep(3)
    replicas = [
        a for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::kill#")
    ]  # fmt: skip
    assert len(replicas) == 2
    ray.kill(
        ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True
    )
    thread.join(timeout=90)
    result = box["result"]
    print("statuses while a replica died:", dict(result.statuses), "retried:", result.retried)
    assert result.ok > 100
    # nothing lost, nothing hangs: every request (resent at most once) answered 200
    assert set(result.statuses) == {200}, (result.statuses, result.retried)
    serve.delete("kill")


def test_h2rec_serves_through_the_scoring_path(serve_url, registry, catalog):
    from ray import serve

    url = deploy(serve_url, registry, "h2rec", "sidrec-h2rec-beauty")
    r = post(url, {"history": catalog[20:26], "k": 8, "exclude_seen": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "sidrec-h2rec-beauty", "version": "1"}
    assert len(body["items"]) == 8 and not {i["item_id"] for i in body["items"]} & set(
        catalog[20:26]
    )
    assert all(len(i["sid"]) >= 3 for i in body["items"])  # the SID it was trained on, shown
    model = requests.get(f"{url}/v1/model", timeout=10).json()
    assert model["kind"] == "h2rec" and not model["generative"]
    serve.delete("h2rec")


def test_sidgpt_serves_through_the_trie_beam_search(serve_url, registry, catalog):
    """The decoder-only kind over HTTP: generated SIDs of real items, seen ones dropped."""
    from ray import serve

    url = deploy(serve_url, registry, "sidgpt", "sidrec-sidgpt-beauty")
    r = post(url, {"history": catalog[30:36], "k": 7, "exclude_seen": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "sidrec-sidgpt-beauty", "version": "1"}
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 7 and len(set(ids)) == 7 and not set(ids) & set(catalog[30:36])
    assert set(ids) <= set(catalog)
    assert all(len(i["sid"]) == 4 for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)  # log-probs
    model = requests.get(f"{url}/v1/model", timeout=10).json()
    assert model["kind"] == "sidgpt" and model["generative"]
    serve.delete("sidgpt")


def test_lmrec_serves_through_the_trie_beam_search(serve_url, registry, catalog):
    """The LM-backbone kind over HTTP: its bundle (backbone + adapter + SID tokens)
    answers with generated SIDs of real items, seen ones dropped."""
    from ray import serve

    url = deploy(serve_url, registry, "lmrec", "sidrec-lmrec-beauty")
    r = post(url, {"history": catalog[40:46], "k": 6, "exclude_seen": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == {"name": "sidrec-lmrec-beauty", "version": "1"}
    ids = [i["item_id"] for i in body["items"]]
    assert len(ids) == 6 and len(set(ids)) == 6 and not set(ids) & set(catalog[40:46])
    assert set(ids) <= set(catalog)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)  # log-probs
    model = requests.get(f"{url}/v1/model", timeout=10).json()
    assert model["kind"] == "lmrec" and model["generative"]
    serve.delete("lmrec")


def test_bearer_token_auth_guards_every_route_but_healthz(serve_url, registry, catalog):
    """auth_token_env names the env var holding the token where replicas run: 401 (with
    WWW-Authenticate) without it or with a wrong one, 200 with it; /healthz stays open."""
    from ray import serve

    token = "s3cret-token-for-the-test"
    url = deploy(
        serve_url, registry, "auth", NAME,
        auth_token_env="SIDREC_TEST_TOKEN",
        runtime_env={"env_vars": {"SIDREC_TEST_TOKEN": token}},
    )  # fmt: skip
    body = {"history": catalog[:3], "k": 3}
    missing = post(url, body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert token not in missing.text
    assert post(url, body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    good = {"Authorization": f"Bearer {token}"}
    assert post(url, body, headers=good).status_code == 200
    assert requests.get(f"{url}/v1/model", timeout=10).status_code == 401
    assert requests.get(f"{url}/v1/model", headers=good, timeout=10).status_code == 200
    assert requests.get(f"{url}/v1/items/{catalog[0]}", timeout=10).status_code == 401
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    serve.delete("auth")


def test_the_shipped_config_binds_localhost_only():
    import yaml

    config = yaml.safe_load((TESTS.parent / "serve_apps" / "config.yaml").read_text())
    assert config["http_options"]["host"] == "127.0.0.1"
