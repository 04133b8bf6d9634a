"""The HTTP API of the fit service (FastAPI): models by reference, fits, CLs, limits, scans, batches, jobs.

Every ``/v1`` route needs the bearer token; ``/healthz`` and ``/readyz`` are open for the probes. Errors
are one line in ``detail``: 401 (token), 404 (no such model or job), 413 (too large), 422 (a schema error,
naming the field, or a model no backend can load), 501 (a backend this server lacks), 503 (a worker died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from nsbiflow import __version__
from nsbiflow.errors import NsbiflowError
from nsbiflow.service import worker
from nsbiflow.service.auth import TokenChecker
from nsbiflow.service.backends import backend
from nsbiflow.service.backends.pyhf_workspace import warm_up_server
from nsbiflow.service.errors import ServiceError, http_status
from nsbiflow.service.jobs import Job, JobManager
from nsbiflow.service.limits import BodySizeLimit
from nsbiflow.service.pool import FitPool
from nsbiflow.service.registry import ModelRegistry, ResolvedModel
from nsbiflow.service.schemas import (
    DIGEST_PATTERN,
    JOB_ID_PATTERN,
    MODEL_REF_PATTERN,
    AnalyseAnswer,
    AnalyseRequest,
    AnalyseResult,
    Answer,
    BatchItem,
    BatchRequest,
    BatchResult,
    BlobStored,
    ErrorMessage,
    FitOptions,
    FitRequest,
    FitResult,
    Health,
    HypotestOptions,
    HypotestRequest,
    InfoOptions,
    JobAccepted,
    JobRequest,
    JobStatus,
    MissingBlobs,
    MissingBlobsRequest,
    ModelEntry,
    ModelList,
    ProfileOptions,
    ProfileResult,
    ScanRequest,
    ScanResult,
    UploadRequest,
    UpperLimitOptions,
    UpperLimitRequest,
)
from nsbiflow.service.settings import ServiceSettings
from nsbiflow.store import ArtifactStore, open_store

log = logging.getLogger("nsbiflow.service")

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorMessage} for status in (400, 401, 404, 413, 422, 501, 503)
}
ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"model": JobAccepted, "description": "still running: poll"}}


def _field_error(exc: RequestValidationError | ValidationError, prefix: tuple[Any, ...] = ()) -> JSONResponse:
    """422 whose ``detail`` line names the first bad field (``body.poi: ...``); all of them in ``errors``."""
    errors = [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]} for error in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return JSONResponse(
        status_code=422,
        content=jsonable_encoder({"detail": f"{where}: {first['msg']}", "errors": errors}),
    )


class Service:
    """The state one server process holds: store, registry, worker pool, jobs."""

    def __init__(self, settings: ServiceSettings, store: ArtifactStore) -> None:
        self.settings = settings
        self.store = store
        self.registry = ModelRegistry(store, settings.max_model_bytes)
        self.pool = FitPool(settings.workers, settings.warm_models)
        self.jobs = JobManager(store, settings.job_ttl_s)

    def task(self, model: ResolvedModel, operation: Any, patch: list[Any] | None = None) -> worker.Task:
        """A worker task for one operation."""
        return worker.Task(
            store=self.store.uri, kind=model.kind, digest=model.digest, operation=operation,
            patch=tuple(op.as_dict() if hasattr(op, "as_dict") else op for op in patch) if patch else None,
            max_model_bytes=self.settings.max_model_bytes,
        )

    async def resolve(self, ref: str) -> ResolvedModel:
        """Resolve a reference off the event loop (it reads the store) and check its backend is here."""
        resolved = await asyncio.to_thread(self.registry.resolve, ref)
        backend(resolved.kind)
        return resolved

    async def answer(self, kind: str, total: int, work: Callable[[Job], Awaitable[BaseModel]]) -> Any:
        """Run a job; its result if it ends within ``sync_wait_s``, else 202 with the job id."""
        job = self.jobs.start(kind, total, work)
        if await self.jobs.wait(job, self.settings.sync_wait_s):
            if job.error is not None:
                raise job.error
            return job.result
        await self.jobs.detach(job)
        return JSONResponse(status_code=202, content=self.accepted(job).model_dump())

    @staticmethod
    def accepted(job: Job) -> JobAccepted:
        """The 202 body."""
        return JobAccepted(job_id=job.id, status=job.status, poll=f"/v1/jobs/{job.id}")

    # -- work of each request kind ----------------------------------------------------------------------
    def single(self, request: FitRequest | HypotestRequest | UpperLimitRequest, operation: Any) -> Any:
        """The work of a one-operation request."""

        async def work(job: Job) -> Answer:
            started = time.perf_counter()
            job.total = 1
            model = await self.resolve(request.model)
            result = await self.pool.run(self.task(model, operation, request.patch))
            job.advance()
            return Answer(model=request.model, digest=model.digest, kind=model.kind,
                          result=result, seconds=time.perf_counter() - started)

        return work

    def scan(self, request: ScanRequest) -> Callable[[Job], Awaitable[BaseModel]]:
        """A profile scan: the best fit and every point as separate tasks, in parallel."""

        async def work(job: Job) -> Any:

            started = time.perf_counter()
            job.total = request.points + 1
            model = await self.resolve(request.model)
            step = (request.stop - request.start) / (request.points - 1)
            values = [request.start + i * step for i in range(request.points)]

            async def point(value: float) -> ProfileResult:
                result = await self.pool.run(
                    self.task(model, ProfileOptions(parameter=request.parameter, value=value), request.patch)
                )
                job.advance()
                assert isinstance(result, ProfileResult)
                return result

            async def best_fit() -> Any:
                result = await self.pool.run(self.task(model, FitOptions(), request.patch))
                job.advance()
                return result

            best, *points = await asyncio.gather(best_fit(), *(point(v) for v in values))
            assert isinstance(best, FitResult)
            profiles = [p for p in points if isinstance(p, ProfileResult)]
            twice = [p.twice_nll for p in profiles]
            minimum = min([best.twice_nll, *twice])
            return ScanResult(
                model=request.model, digest=model.digest, kind=model.kind,
                parameter=profiles[0].parameter if profiles else "", values=values, twice_nll=twice,
                delta_twice_nll=[t - minimum for t in twice], best=best, seconds=time.perf_counter() - started,
            )

        return work

    def batch(self, request: BatchRequest) -> Callable[[Job], Awaitable[BaseModel]]:
        """One operation on many patched models, one task per patch, in parallel."""

        async def work(job: Job) -> BatchResult:
            started = time.perf_counter()
            model = await self.resolve(request.model)
            if request.patchset is not None:
                document = await asyncio.to_thread(self.registry.document, model.digest)
                named = backend(model.kind).expand_patchset(document, request.patchset, request.names)
            else:
                named = [(p.name, [op.as_dict() for op in p.patch]) for p in request.patches or []]
            if len(named) > self.settings.max_batch:
                limit = self.settings.max_batch
                raise ServiceError(f"patches: {len(named)} patches, over the server's limit of {limit}")
            job.total = len(named)

            async def one(name: str, patch: list[Any]) -> BatchItem:
                try:
                    result = await self.pool.run(self.task(model, request.operation, patch))
                    return BatchItem(name=name, result=result)
                except NsbiflowError as exc:
                    return BatchItem(name=name, error=str(exc))
                finally:
                    job.advance()

            items = await asyncio.gather(*(one(name, patch) for name, patch in named))
            return BatchResult(
                model=request.model, digest=model.digest, kind=model.kind,
                operation=request.operation.op, items=list(items), failed=sum(1 for i in items if i.error),
                seconds=time.perf_counter() - started,
            )

        return work

    def analyse(self, request: AnalyseRequest) -> Callable[[Job], Awaitable[BaseModel]]:
        """The ``fit`` step's methods on one NSBI model: one task per method, in parallel."""

        async def work(job: Job) -> AnalyseAnswer:
            started = time.perf_counter()
            job.total = len(request.tasks)
            model = await self.resolve(request.model)

            async def one(options: Any) -> AnalyseResult:
                result = await self.pool.run(self.task(model, options))
                job.advance()
                assert isinstance(result, AnalyseResult)
                return result

            methods = await asyncio.gather(*(one(options) for options in request.tasks))
            return AnalyseAnswer(model=request.model, digest=model.digest, kind=model.kind, methods=list(methods),
                                 seconds=time.perf_counter() - started)

        return work

    def work_of(self, kind: str, request: Any) -> Callable[[Job], Awaitable[BaseModel]]:
        """The work of any request kind (for ``/v1/jobs``)."""
        composite: dict[type[BaseModel], Callable[[Any], Callable[[Job], Awaitable[BaseModel]]]] = {
            ScanRequest: self.scan, BatchRequest: self.batch, AnalyseRequest: self.analyse,
        }
        if type(request) in composite:
            return composite[type(request)](request)
        option_type = SINGLE_OPTIONS[type(request)]
        operation = option_type.model_validate(request.model_dump(include=set(option_type.model_fields)))
        return self.single(request, operation)


# the options model of each one-operation request (its fields are a subset of the request's)
SINGLE_OPTIONS: dict[type[BaseModel], type[BaseModel]] = {
    FitRequest: FitOptions, HypotestRequest: HypotestOptions, UpperLimitRequest: UpperLimitOptions
}

REQUEST_KINDS: dict[str, type[BaseModel]] = {
    "fit": FitRequest, "hypotest": HypotestRequest, "upper-limit": UpperLimitRequest,
    "scan": ScanRequest, "batch": BatchRequest, "analyse": AnalyseRequest,
}


def create_app(settings: ServiceSettings, store: ArtifactStore | None = None) -> FastAPI:
    """The ASGI application (wrapped in the body-size limit)."""
    checker = TokenChecker(settings)
    service = Service(settings, store or open_store(settings.store))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.gather(service.pool.start(), asyncio.to_thread(warm_up_server))
        for ref in settings.preload:
            try:
                model = await service.resolve(ref)
                details = await service.pool.run(service.task(model, InfoOptions()))
            except NsbiflowError as exc:  # serve anyway: requests for it get the same one-line error
                log.error("cannot preload %s: %s", ref, str(exc).splitlines()[0])
                continue
            log.info("preloaded %s (%s, %d parameters)", ref, model.kind, len(getattr(details, "parameters", [])))
        log.info("fit service ready: %d worker(s), store %s", settings.workers, service.store.uri)
        try:
            yield
        finally:
            service.jobs.cancel_all()
            service.pool.close()

    app = FastAPI(
        title="nsbiflow fit service", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None, openapi_url=None,
        description="Warm pyhf and NSBI fits over HTTP. Every /v1 route needs `Authorization: Bearer <token>`.",
    )
    app.state.service = service

    def authorized(request: Request) -> None:
        if not checker.check(request.headers.get("authorization")):
            raise Unauthorized("missing or wrong bearer token (Authorization: Bearer <token>)")

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _field_error(exc)

    @app.exception_handler(Unauthorized)
    async def on_unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(status_code=401, content={"detail": str(exc)}, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(NsbiflowError)
    async def on_error(request: Request, exc: NsbiflowError) -> JSONResponse:
        return JSONResponse(status_code=http_status(exc), content={"detail": str(exc).splitlines()[0]})

    auth = [Depends(authorized)]

    @app.get("/healthz", response_model=Health, tags=["probes"])
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok", workers=settings.workers, version=__version__)

    @app.get("/readyz", response_model=Health, tags=["probes"], responses={503: {"model": Health}})
    async def readyz() -> Any:
        """Readiness: the workers are up."""
        body = Health(status="ok" if service.pool.ready else "starting", workers=settings.workers,
                      version=__version__)
        return body if service.pool.ready else JSONResponse(status_code=503, content=body.model_dump())

    @app.get("/v1/openapi.json", dependencies=auth, include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        """This API's OpenAPI document."""
        return app.openapi()

    @app.get("/v1/models", response_model=ModelList, dependencies=auth, responses=ERRORS, tags=["models"])
    async def list_models() -> ModelList:
        """Models registered in the store."""
        return ModelList(models=await asyncio.to_thread(service.registry.entries))

    @app.post("/v1/models", response_model=ModelEntry, status_code=201, dependencies=auth, responses=ERRORS,
              tags=["models"])
    async def upload_model(body: UploadRequest) -> ModelEntry:
        """Store a model document (size-limited), check that it loads, register it; address it by its digest."""
        digest, size = await asyncio.to_thread(service.registry.store_document, body.kind, body.document)
        model = ResolvedModel(digest, body.kind, digest)
        await service.pool.run(service.task(model, InfoOptions()))  # it loads: only then is it registered
        return await asyncio.to_thread(service.registry.register, body.kind, digest, size, body.name)

    @app.get("/v1/models/{ref:path}", response_model=Answer, dependencies=auth, responses=ERRORS, tags=["models"])
    async def model_info(ref: str = Path(..., pattern=MODEL_REF_PATTERN)) -> Answer:
        """Load a model (it stays warm) and describe it."""
        started = time.perf_counter()
        model = await service.resolve(ref)
        details = await service.pool.run(service.task(model, InfoOptions()))
        return Answer(model=ref, digest=model.digest, kind=model.kind,
                      result=details, seconds=time.perf_counter() - started)

    @app.post("/v1/fit", response_model=Answer, dependencies=auth, responses={**ERRORS, **ACCEPTED}, tags=["fits"])
    async def fit(body: FitRequest) -> Any:
        """Maximum-likelihood fit (Minuit uncertainties for pyhf models)."""
        return await service.answer("fit", 1, service.work_of("fit", body))

    @app.post("/v1/hypotest", response_model=Answer, dependencies=auth, responses={**ERRORS, **ACCEPTED},
              tags=["fits"])
    async def hypotest(body: HypotestRequest) -> Any:
        """Asymptotic CLs at one POI value (what `pyhf cls` computes)."""
        return await service.answer("hypotest", 1, service.work_of("hypotest", body))

    @app.post("/v1/upper-limit", response_model=Answer, dependencies=auth, responses={**ERRORS, **ACCEPTED},
              tags=["fits"])
    async def upper_limit(body: UpperLimitRequest) -> Any:
        """Observed and expected CLs upper limits on the POI."""
        return await service.answer("upper-limit", 1, service.work_of("upper-limit", body))


    @app.post("/v1/scan", response_model=ScanResult, dependencies=auth, responses={**ERRORS, **ACCEPTED},
              tags=["fits"])
    async def scan(body: ScanRequest) -> Any:
        """Profile-likelihood scan of one parameter, points in parallel."""
        return await service.answer("scan", body.points + 1, service.scan(body))

    @app.post("/v1/batch", response_model=BatchResult, dependencies=auth, responses={**ERRORS, **ACCEPTED},
              tags=["fits"])
    async def batch(body: BatchRequest) -> Any:
        """One operation on each patch of a patchset (or list of patches), in parallel over the workers."""
        return await service.answer("batch", 0, service.batch(body))

    @app.post("/v1/analyse", response_model=AnalyseAnswer, dependencies=auth, responses={**ERRORS, **ACCEPTED},
              tags=["fits"])
    async def analyse(body: AnalyseRequest) -> Any:
        """The `fit` step's analysis of an NSBI model, one method per worker (what `NSBIFLOW_FIT_SERVER` sends)."""
        return await service.answer("analyse", len(body.tasks), service.analyse(body))

    @app.post("/v1/blobs/missing", response_model=MissingBlobs, dependencies=auth, responses=ERRORS, tags=["blobs"])
    async def missing_blobs(body: MissingBlobsRequest) -> MissingBlobs:
        """Which of these blobs the store lacks (a client uploads only those)."""
        missing = await asyncio.to_thread(lambda: [d for d in body.digests if not service.store.has_blob(d)])
        return MissingBlobs(missing=missing)

    @app.put("/v1/blobs/{digest}", response_model=BlobStored, dependencies=auth, responses=ERRORS, tags=["blobs"])
    async def put_blob(request: Request, digest: str = Path(..., pattern=f"^{DIGEST_PATTERN}$")) -> BlobStored:
        """Store a blob (the raw body; its sha256 must be ``digest``), e.g. a ratio table an NSBI bundle names."""
        from nsbiflow.store.digest import digest_bytes

        data = await request.body()
        if digest_bytes(data) != digest:
            raise ServiceError(f"blob: the body does not hash to {digest} (it hashes to {digest_bytes(data)})")
        await asyncio.to_thread(service.store.put_bytes, data)
        return BlobStored(digest=digest, size=len(data))

    @app.post("/v1/jobs", response_model=JobAccepted, status_code=202, dependencies=auth, responses=ERRORS,
              tags=["jobs"])
    async def submit_job(body: JobRequest) -> JobAccepted:
        """Run any request in the background; poll `GET /v1/jobs/{id}`."""
        model_type = REQUEST_KINDS[body.kind]
        try:
            request = model_type.model_validate(body.request)
        except ValidationError as exc:
            raise _WrappedValidation(exc) from None
        job = service.jobs.start(body.kind, 0, service.work_of(body.kind, request), detached=True)
        return service.accepted(job)

    @app.exception_handler(_WrappedValidation)
    async def on_wrapped(request: Request, exc: _WrappedValidation) -> JSONResponse:
        return _field_error(exc.error, ("body", "request"))

    @app.get("/v1/jobs/{job_id}", response_model=JobStatus, dependencies=auth, responses=ERRORS, tags=["jobs"])
    async def job_status(job_id: str = Path(..., pattern=JOB_ID_PATTERN)) -> JobStatus:
        """A job's progress (`done` of `total` parts) and, once finished, its result or error."""
        return await asyncio.to_thread(service.jobs.status, job_id)

    return app


class Unauthorized(Exception):
    """401: the auth dependency found no valid token."""


class _WrappedValidation(Exception):
    """A validation error of a job's embedded request (reported as 422 under ``body.request``)."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(str(error))
        self.error = error


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the API (what ``service/openapi.json`` holds; no server or store needed)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        document: dict[str, Any] = create_app(ServiceSettings(no_auth=True), open_store(scratch)).openapi()
    return document


def asgi(settings: ServiceSettings, store: ArtifactStore | None = None) -> BodySizeLimit:
    """The application wrapped in the request-body limit: what uvicorn serves."""
    return BodySizeLimit(create_app(settings, store), settings.max_request_bytes,
                         {"/v1/blobs/": settings.max_blob_bytes})
