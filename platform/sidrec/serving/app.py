"""The recommendation endpoint as a Ray Serve deployment. `serve_apps/recommender.py`
(what users run) re-exports `build_app` from here: the deployment lives in the
installed package so that Serve replicas import it by reference on any node.

The recommendation endpoint: a Ray Serve app that loads a registered model from
MLflow and answers with one batched, trie-constrained beam search per batch.

    serve run serve_apps/config.yaml                 # this machine (Ray starts embedded)
    serve deploy serve_apps/config.yaml              # a running cluster (ray start / ray up)
    serve run serve_apps.recommender:build_app model_uri=models:/sidrec-lamia-beauty@candidate
    curl -s localhost:8000/v1/recommend -H 'content-type: application/json' \\
        -d '{"history": ["B004OHQR1Q", "B0043OYFKU"], "k": 5}'

API v1 (OpenAPI at /openapi.json, docs at /docs):
  POST /v1/recommend   {history: [catalog item ids, oldest first], k, exclude_seen}
                       -> {items: [{item_id, title, score, sid, path, explanation}],
                           model: {name, version}, cold_start, history_used}
  GET  /v1/items?q=    catalog items whose title holds every word of q (the page's search)
  GET  /v1/items/{id}  an item's title, category path, SID, SID labels and popularity
                       (404 if unknown)
  GET  /v1/model       what is loaded: name, version, kind, test metrics, knobs
  GET  /healthz        200 once the model is loaded (never behind auth)
  GET  /               a web page to try it: search, build a history, see the top-k
                       with their explanations (static, no auth: its API calls carry
                       the token typed into it)

Explanations: per code of each recommended item's SID, a label for the prefix
ending at that code, and the history items sharing the item's longest SID prefix
(SASRec, without SIDs: the longest category-path prefix); sidrec.serving.explain.

Auth (optional): with `auth_token_env: NAME` in the app args, every route but
/healthz needs `Authorization: Bearer <the value of $NAME>`, compared in
constant time; else 401 with `WWW-Authenticate: Bearer`. The shipped config
binds 127.0.0.1; bind 0.0.0.0 only behind auth or a gateway.

Input rules: unknown item ids -> 422 listing them; k > max_k -> 422; a history
longer than max_history -> 422, else only the model's window of most recent
items is read (`history_used`); an empty history -> the most popular items,
`cold_start: true`; malformed JSON or unknown fields -> 422. Past
`max_queued_requests` waiting requests: 429 with `Retry-After`.

Runtime knobs without a redeploy (`user_config` in config.yaml, then `serve
deploy` again, or `serve.run(...)` with new options): beam_width,
max_batch_size, batch_wait_timeout_s, model_uri (a new model is loaded beside
the old one, which answers until the swap) and alias_poll_s (> 0: follow the
registry alias, so `MlflowClient().set_registered_model_alias(...)` alone rolls
out a version, with no failed request).

The decode itself is `sidrec.serving` (plain, unit-tested functions); this file
only wires it to HTTP.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations
# as objects, and the class is unpickled where string names would not resolve.
import asyncio
import hmac
import json
import logging
import os
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig
from starlette.exceptions import HTTPException as StarletteHTTPException

from sidrec.serving import (
    ItemInfo,
    ItemSearchResponse,
    Limits,
    RecommendRequest,
    RecommendResponse,
    RequestError,
    ServingModel,
    check_request,
    item_info,
    load_serving_model,
    recommend_batch,
    resolve_identity,
    search_items,
)
from sidrec.serving.page import page_html

log = logging.getLogger("ray.serve")

DEFAULT_MAX_BATCH_SIZE = 32


class RuntimeKnobs(BaseModel):
    """What `reconfigure(user_config)` may change on live replicas."""

    model_config = ConfigDict(extra="forbid")

    beam_width: int = Field(20, ge=1, le=512)  # candidates decoded per request (>= k)
    max_batch_size: int = Field(DEFAULT_MAX_BATCH_SIZE, ge=1, le=1024)
    # How long the first request of a batch waits for company: latency at low
    # load bought for throughput at high load.
    batch_wait_timeout_s: float = Field(0.01, ge=0.0, le=1.0)
    model_uri: str | None = None  # None: keep the one from the app args
    alias_poll_s: float = Field(0.0, ge=0.0)  # 0: never re-resolve the alias
    # False drops the trie mask: only to measure its cost (bench/serve_load.py);
    # invalid SIDs are then dropped from the answer, which may hold fewer than k.
    constrained: bool = True


class AppArgs(BaseModel):
    """`build_app` arguments (the `args:` of config.yaml)."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str  # models:/NAME@ALIAS, models:/NAME/VERSION or a bundle folder
    # MLflow store; None: $MLFLOW_TRACKING_URI, else the SQLite file of the
    # dataset's artifact root (what the jobs wrote).
    tracking_uri: str | None = None
    dataset: str = "beauty"  # only used to find the default artifact root
    artifact_root: str | None = None
    device: str = "cpu"  # "cuda" puts each replica on a GPU
    torch_threads: int = Field(1, ge=1)  # per replica; replicas scale out instead
    num_cpus: float = Field(1.0, ge=0.0)  # per replica
    num_replicas: int = Field(1, ge=1)  # ignored when autoscaling is set
    autoscaling: dict[str, Any] | None = None  # Serve AutoscalingConfig fields
    max_k: int = Field(100, ge=1)
    max_history: int = Field(1000, ge=1)
    # Requests waiting beyond this many are answered 429 + Retry-After at once,
    # instead of queueing into timeouts.
    max_queued_requests: int = Field(256, ge=1)
    retry_after_s: float = Field(1.0, ge=0.0)
    # Requests a replica works on at once; None = twice the batch size. It caps
    # the batch silently (docs/ARCHITECTURE.md, Ray pitfalls), so a max_batch_size above it is refused.
    max_ongoing_requests: int | None = Field(None, ge=1)
    knobs: RuntimeKnobs = Field(default_factory=RuntimeKnobs)
    # Bearer-token auth: the NAME of an environment variable that holds the token
    # where the replicas run (the token itself never goes in a config or a log).
    # None: no auth (bind 127.0.0.1, or put a gateway in front).
    auth_token_env: str | None = None
    # Ray runtime env of the replicas (e.g. {"env_vars": {"SIDREC_API_TOKEN": ...}}
    # from a secret store, when the token is not in the cluster's environment).
    runtime_env: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    detail: Any = Field(..., description="What was wrong, naming the field or item at fault")


# Every status the endpoint can answer besides 200, in the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not parsable JSON"},
    401: {"model": ErrorBody, "description": "Auth is on and the bearer token is missing or wrong"},
    404: {"model": ErrorBody, "description": "Unknown item id (GET /v1/items/{id})"},
    422: {"model": ErrorBody, "description": "The request breaks the schema or a server limit"},
    429: {"model": ErrorBody, "description": "Overloaded: retry after the Retry-After header"},
    503: {"model": ErrorBody, "description": "No replica is ready (starting or recovering)"},
}


# Defined before the deployment: Serve pickles the class by value when it is
# decorated, with the module globals that exist at that moment.
def _decode_jobs(
    jobs: list[tuple[ServingModel, Any]], beam_width: int, constrained: bool
) -> list[dict[str, Any]]:
    """One model call per model in the batch (two only while a swap is under way)."""
    out: list[dict[str, Any] | None] = [None] * len(jobs)
    for model in {id(m): m for m, _ in jobs}.values():
        rows = [i for i, (m, _) in enumerate(jobs) if m is model]
        for i, answer in zip(
            rows,
            recommend_batch(model, [jobs[i][1] for i in rows], beam_width, constrained),
            strict=True,
        ):
            out[i] = answer
    return out


def _max_ongoing(args: AppArgs) -> int:
    return args.max_ongoing_requests or 2 * args.knobs.max_batch_size


def _default_tracking_uri(args: AppArgs) -> str:
    from pathlib import Path

    from sidrec import tracking
    from sidrec.cli import DEFAULT_ARTIFACT_BASE, ENV_ARTIFACT_ROOT

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    base = Path(os.environ.get(ENV_ARTIFACT_ROOT) or DEFAULT_ARTIFACT_BASE).expanduser()
    root = Path(args.artifact_root).expanduser() if args.artifact_root else base / args.dataset
    return tracking.tracking_uri(root)


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped. A request may carry a lone UTF-16
    surrogate ("\\ud800" is valid JSON); a 422 that names the bad item echoes it, and
    UTF-8 cannot encode it: the default response class then fails with a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode()


api = FastAPI(
    title="sidrec recommendations",
    version="1",
    description=(__doc__ or "").split("The decode itself")[0],
    default_response_class=AsciiJSONResponse,
)


# FastAPI's own error handlers answer with the plain JSONResponse: the same for errors.
@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> AsciiJSONResponse:
    return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> AsciiJSONResponse:
    return AsciiJSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
    )


def _read_token(env_name: str | None) -> bytes | None:
    if env_name is None:
        return None
    token = os.environ.get(env_name, "")
    if not token:
        raise ValueError(
            f"auth_token_env={env_name!r}: that environment variable is unset or empty where "
            "the replica runs; set it there (or in args.runtime_env), or drop auth_token_env"
        )
    return token.encode()


# Defined above the class: serve.ingress pickles the class by value when it is
# decorated, so a helper defined below it is missing in the replica (NameError).
@serve.deployment
@serve.ingress(api)
class Recommender:
    def __init__(self, args: dict[str, Any]):
        import torch

        self.args = AppArgs(**args)
        torch.set_num_threads(self.args.torch_threads)
        self.tracking_uri = self.args.tracking_uri or _default_tracking_uri(self.args)
        self.limits = Limits(max_k=self.args.max_k, max_history=self.args.max_history)
        self._token = _read_token(self.args.auth_token_env)
        self.knobs = RuntimeKnobs()  # then reconfigure(user_config) sets the real ones
        self.model: ServingModel = load_serving_model(
            self.args.model_uri, self.tracking_uri, self.args.device
        )
        self._poller: asyncio.Task | None = None
        self._apply_batch_knobs()

    # --- runtime knobs ---------------------------------------------------

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        knobs = RuntimeKnobs(**{**self.knobs.model_dump(), **(user_config or {})})
        if knobs.max_batch_size > _max_ongoing(self.args):
            raise ValueError(
                f"user_config max_batch_size={knobs.max_batch_size} > max_ongoing_requests="
                f"{_max_ongoing(self.args)}: batches could never fill; raise "
                "max_ongoing_requests in the app args"
            )
        uri = knobs.model_uri or self.args.model_uri
        if uri != self.model.uri:
            # Load beside the old model; requests keep using it until the swap.
            self.model = await asyncio.to_thread(
                load_serving_model, uri, self.tracking_uri, self.args.device
            )
        self.knobs = knobs
        self._apply_batch_knobs()

    def _apply_batch_knobs(self) -> None:
        self._decode.set_max_batch_size(self.knobs.max_batch_size)
        self._decode.set_batch_wait_timeout_s(self.knobs.batch_wait_timeout_s)

    def _follow_alias(self) -> None:
        if self.knobs.alias_poll_s > 0 and (self._poller is None or self._poller.done()):
            self._poller = asyncio.get_running_loop().create_task(self._poll_alias())

    async def _poll_alias(self) -> None:
        """Swap in the version the alias points at, whenever it moves."""
        while self.knobs.alias_poll_s > 0:
            await asyncio.sleep(self.knobs.alias_poll_s)
            model = self.model
            try:
                _, version = await asyncio.to_thread(resolve_identity, model.uri)
                if version != model.version:
                    self.model = await asyncio.to_thread(
                        load_serving_model, model.uri, self.tracking_uri, self.args.device
                    )
            except Exception:  # the registry may be briefly unreachable: keep serving
                log.exception(
                    "re-resolving %s failed; still serving version %s", model.uri, model.version
                )

    async def check_health(self) -> None:
        self._follow_alias()

    # --- HTTP -------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        """401 unless auth is off or the bearer token matches (constant-time compare)."""
        if self._token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    @api.post("/v1/recommend", response_model=RecommendResponse, responses=ERRORS)
    async def recommend(self, body: RecommendRequest, request: Request) -> dict[str, Any]:
        self._authorize(request)
        self._follow_alias()
        model = self.model  # one model per request, even across a swap
        try:
            query = check_request(model, body, self.limits)
        except RequestError as err:
            raise HTTPException(err.status, err.detail) from None
        return await self._decode((model, query))

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=0.01)
    async def _decode(self, jobs: list[tuple[ServingModel, Any]]) -> list[dict[str, Any]]:
        # Off the event loop: the loop keeps accepting (and queueing) requests.
        return await asyncio.to_thread(
            _decode_jobs, jobs, self.knobs.beam_width, self.knobs.constrained
        )

    @api.get("/v1/items/{item_id}", response_model=ItemInfo, responses=ERRORS)
    async def item(self, item_id: str, request: Request) -> ItemInfo:
        self._authorize(request)
        try:
            return item_info(self.model, item_id)
        except RequestError as err:
            raise HTTPException(err.status, err.detail) from None

    @api.get("/v1/items", response_model=ItemSearchResponse, responses=ERRORS)
    async def search(
        self,
        request: Request,
        q: str = Query(
            ..., min_length=1, max_length=200, description="Words that must all be in the title"
        ),
        limit: int = Query(20, ge=1, le=100, description="At most this many items"),
    ) -> ItemSearchResponse:
        self._authorize(request)
        return search_items(self.model, q, limit)

    @api.get("/v1/model", responses=ERRORS)
    async def model_info(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {
            **self.model.describe(),
            "limits": {"max_k": self.limits.max_k, "max_history": self.limits.max_history},
            "knobs": self.knobs.model_dump(),
            "replica_pid": os.getpid(),
        }

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok", "model": self.model.name, "version": str(self.model.version)}

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(self) -> HTMLResponse:
        # Static: no data and no secret in it, so it is served without auth.
        return HTMLResponse(page_html())


def build_app(args: AppArgs) -> Application:
    """The Serve application for `args` (Serve validates them against AppArgs)."""
    batch = args.knobs.max_batch_size
    options: dict[str, Any] = {
        # Room for a full batch decoding plus the next one filling up.
        "max_ongoing_requests": _max_ongoing(args),
        "max_queued_requests": args.max_queued_requests,
        "backpressure_config": BackpressureConfig(
            status_code=429, retry_after_s=args.retry_after_s
        ),
        "user_config": args.knobs.model_dump(),
        "ray_actor_options": {
            "num_cpus": args.num_cpus,
            "num_gpus": 1 if args.device.startswith("cuda") else 0,
            **({"runtime_env": args.runtime_env} if args.runtime_env else {}),
        },
        "health_check_period_s": 5,
    }
    if args.autoscaling:
        # Scale on queued work: one full batch in flight per replica is the target.
        options["autoscaling_config"] = {"target_ongoing_requests": batch, **args.autoscaling}
    else:
        options["num_replicas"] = args.num_replicas
    # Knobs travel only as user_config: changing them alone then reconfigures the
    # live replicas instead of replacing them.
    fixed = args.model_copy(update={"max_ongoing_requests": _max_ongoing(args)})
    return Recommender.options(**options).bind(fixed.model_dump(exclude={"knobs"}))
