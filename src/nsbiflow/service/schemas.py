"""Request and response schemas of the fit service (pydantic v2; the OpenAPI document is generated from them).

A model is named by a *reference*, never by a path: ``sha256:<64 hex>`` (a model document in the store) or
``<archive>[@<digest prefix>][:<result>]`` (a model an archived analysis produced, e.g. its pyhf workspace).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from nsbiflow.physics.model.methods import ALL_METHODS, Method

DIGEST_PATTERN = r"sha256:[0-9a-f]{64}"
ARCHIVE_REF_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(@[0-9a-f]{4,64})?(:[A-Za-z0-9][A-Za-z0-9._/-]{0,199})?"
MODEL_REF_PATTERN = rf"^({DIGEST_PATTERN}|{ARCHIVE_REF_PATTERN})$"
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"



def _whole_digest(ref: str) -> str:
    """``sha256:`` always starts a digest, never an archive name (``sha256:abc`` is a truncated digest)."""
    if ref.lower().startswith("sha256:") and not re.fullmatch(DIGEST_PATTERN, ref):
        raise ValueError("a model digest is sha256: followed by 64 lowercase hex digits")
    return ref


ModelRef = Annotated[
    str,
    AfterValidator(_whole_digest),
    Field(
        pattern=MODEL_REF_PATTERN,
        description="sha256:<digest> of a model in the store, or <archive>[@<digest prefix>][:<result>]",
        examples=["sha256:" + "0" * 64, "toy-nsbi:workspace"],
    ),
]
ModelKind = Literal["pyhf", "nsbi"]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JsonPatchOperation(_Schema):
    """One RFC 6902 operation."""

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str = Field(..., max_length=1000, description="JSON pointer into the model document")
    value: Any = None
    from_: str | None = Field(None, alias="from", max_length=1000, description="source pointer of move/copy")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def as_dict(self) -> dict[str, Any]:
        """The operation as plain JSON (what ``jsonpatch`` applies)."""
        out: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.op in ("add", "replace", "test"):
            out["value"] = self.value
        if self.op in ("move", "copy"):
            out["from"] = self.from_
        return out


Patch = list[JsonPatchOperation]


# ---------------------------------------------------------------- operations (what a worker computes)


class FitOptions(_Schema):
    """Maximum-likelihood fit of every parameter (``fixed`` ones held at their value)."""

    op: Literal["fit"] = "fit"
    fixed: dict[str, float] = Field(default_factory=dict, description="parameter name -> value held fixed")
    init: dict[str, float] = Field(default_factory=dict, description="parameter name -> starting value")


class HypotestOptions(_Schema):
    """Asymptotic CLs of one value of the parameter of interest."""

    op: Literal["hypotest"] = "hypotest"
    poi: float = Field(1.0, description="tested value of the parameter of interest")
    test_stat: Literal["qtilde", "q"] = "qtilde"


class UpperLimitOptions(_Schema):
    """Observed and expected CLs upper limits on the parameter of interest."""

    op: Literal["upper_limit"] = "upper_limit"
    level: float = Field(0.05, gt=0.0, lt=1.0, description="CLs level (0.05: 95 % CL)")
    scan: list[float] | None = Field(
        None, min_length=2, max_length=1000, description="POI grid to interpolate on; default: root finding"
    )


class ProfileOptions(_Schema):
    """``-2 ln L`` profiled over every other parameter, at one value of ``parameter``."""

    op: Literal["profile"] = "profile"
    parameter: str | None = Field(None, description="default: the parameter of interest")
    value: float


class InfoOptions(_Schema):
    """The model's parameters and structure."""

    op: Literal["info"] = "info"


class AnalyseSettings(_Schema):
    """Keyword arguments of the fit step's per-method analysis (``nsbiflow.physics.model.analysis.analyse``)."""

    n_scan: int = Field(41, ge=5, le=1001)
    scan_2d: list[str] | None = Field(None, min_length=2, max_length=2)
    n_scan_2d: int = Field(11, ge=3, le=101)
    with_cls: bool = True
    with_impacts: bool = True


METHODS = ALL_METHODS
"""The fit step's methods (``physics/model/methods.py``, a leaf module: no torch or pyhf is imported here)."""


class AnalyseOptions(_Schema):
    """One method of the ``fit`` step's analysis of an NSBI model (``physics.model.run.MethodTask``)."""

    op: Literal["analyse"] = "analyse"
    method: Method
    analyse: AnalyseSettings = Field(default_factory=AnalyseSettings)
    truth_config: dict[str, Any] = Field(default_factory=dict, description="exact: over the model's truth.config")
    observable: str | None = Field(None, max_length=200, description="histogram: the binned observable")
    hist_bins: int = Field(20, ge=1, le=1000, description="histogram, discriminant: quantile bins")
    hist_interpolation: Literal["code4", "code4p"] = Field(
        "code4", description="histogram, discriminant: shape-systematic interpolation"
    )
    discriminant_null: dict[str, float] = Field(default_factory=dict, description="discriminant: denominator point")
    discriminant_alt: dict[str, float] = Field(default_factory=dict, description="discriminant: numerator point")


Operation = Annotated[
    FitOptions | HypotestOptions | UpperLimitOptions | ProfileOptions | InfoOptions | AnalyseOptions,
    Field(discriminator="op"),
]
BatchOperation = Annotated[FitOptions | HypotestOptions | UpperLimitOptions, Field(discriminator="op")]


# ---------------------------------------------------------------- requests


class _Target(_Schema):
    model: ModelRef
    patch: Patch | None = Field(None, max_length=10_000, description="RFC 6902 patch applied to the model first")


class FitRequest(_Target, FitOptions):
    """``POST /v1/fit``."""


class HypotestRequest(_Target, HypotestOptions):
    """``POST /v1/hypotest``."""


class UpperLimitRequest(_Target, UpperLimitOptions):
    """``POST /v1/upper-limit``."""


class ScanRequest(_Target):
    """``POST /v1/scan``: a profile-likelihood scan, one point per worker task."""

    parameter: str | None = Field(None, description="default: the parameter of interest")
    start: float
    stop: float
    points: int = Field(21, ge=2, le=10_000)

    @model_validator(mode="after")
    def _ordered(self) -> ScanRequest:
        if not self.stop > self.start:
            raise ValueError("stop must be greater than start")
        return self


class NamedPatch(_Schema):
    """One patch of a batch."""

    name: str = Field(..., min_length=1, max_length=200)
    patch: Patch


class BatchRequest(_Schema):
    """``POST /v1/batch``: one operation on many patched copies of a model, evaluated in parallel."""

    model: ModelRef
    patchset: dict[str, Any] | None = Field(None, description="a pyhf PatchSet document (pyhf models)")
    names: list[str] | None = Field(None, description="patches of the patchset to evaluate (default: all)")
    patches: list[NamedPatch] | None = Field(None, description="RFC 6902 patches (any model kind)")
    operation: BatchOperation = Field(default_factory=HypotestOptions)

    @model_validator(mode="after")
    def _one_source(self) -> BatchRequest:
        if (self.patchset is None) == (self.patches is None):
            raise ValueError("give exactly one of patchset or patches")
        if self.names is not None and self.patchset is None:
            raise ValueError("names selects patches of a patchset; give patchset too")
        return self


class AnalyseRequest(_Schema):
    """``POST /v1/analyse``: the ``fit`` step's methods on an NSBI model, one worker task per method, in parallel."""

    model: ModelRef
    tasks: list[AnalyseOptions] = Field(..., min_length=1, max_length=len(METHODS))


class MissingBlobsRequest(_Schema):
    """``POST /v1/blobs/missing``: which of these blobs the server's store lacks."""

    digests: list[Annotated[str, Field(pattern=f"^{DIGEST_PATTERN}$")]] = Field(..., max_length=100_000)


class UploadRequest(_Schema):
    """``POST /v1/models``: store a model document and register it."""

    kind: ModelKind = "pyhf"
    name: str | None = Field(None, max_length=200, description="a label shown in listings")
    document: dict[str, Any] = Field(..., description="the pyhf workspace (or NSBI model bundle) as JSON")


# ---------------------------------------------------------------- responses


class ParameterValue(_Schema):
    """A fitted parameter."""

    name: str
    value: float
    error: float | None = None


class FitResult(_Schema):
    """Best fit."""

    op: Literal["fit"] = "fit"
    twice_nll: float
    parameters: list[ParameterValue]


class HypotestResult(_Schema):
    """CLs of one POI value: observed and the expected band (-2..+2 sigma)."""

    op: Literal["hypotest"] = "hypotest"
    poi: float
    test_stat: str
    cls_obs: float
    cls_exp: list[float]


class UpperLimitResult(_Schema):
    """Upper limits on the POI: observed and the expected band (-2..+2 sigma)."""

    op: Literal["upper_limit"] = "upper_limit"
    level: float
    obs: float
    exp: list[float]


class ProfileResult(_Schema):
    """Profiled ``-2 ln L`` at one parameter value."""

    op: Literal["profile"] = "profile"
    parameter: str
    value: float
    twice_nll: float


class ModelDetails(_Schema):
    """What a loaded model looks like."""

    op: Literal["info"] = "info"
    kind: ModelKind
    poi: str | None
    parameters: list[str]
    summary: dict[str, Any] = Field(default_factory=dict)


class AnalyseResult(_Schema):
    """One method's analysis: ``physics.model.run.analyse_method``'s answer as JSON text (written as the fit
    step writes its results file, non-finite numbers included, so the step's outputs are the same)."""

    op: Literal["analyse"] = "analyse"
    method: str
    answer: str


Result = Annotated[
    FitResult | HypotestResult | UpperLimitResult | ProfileResult | ModelDetails | AnalyseResult,
    Field(discriminator="op"),
]


class Answer(_Schema):
    """One operation's answer on one model."""

    model: str = Field(..., description="the reference as requested")
    digest: str = Field(..., description="the model document's digest")
    kind: ModelKind
    result: Result
    seconds: float


class ScanResult(_Schema):
    """A profile-likelihood scan; ``delta_twice_nll`` is ``t = -2 ln lambda`` against the best fit."""

    model: str
    digest: str
    kind: ModelKind
    parameter: str
    values: list[float]
    twice_nll: list[float]
    delta_twice_nll: list[float]
    best: FitResult
    seconds: float


class BatchItem(_Schema):
    """One patch's answer (``error`` instead of ``result`` when that patch failed)."""

    name: str
    result: Result | None = None
    error: str | None = None


class BatchResult(_Schema):
    """Every patch's answer, in request order."""

    model: str
    digest: str
    kind: ModelKind
    operation: str
    items: list[BatchItem]
    failed: int
    seconds: float


class AnalyseAnswer(_Schema):
    """Every requested method's analysis, in request order."""

    model: str
    digest: str
    kind: ModelKind
    methods: list[AnalyseResult]
    seconds: float


class MissingBlobs(_Schema):
    """The requested digests the store lacks (upload them with ``PUT /v1/blobs/{digest}``)."""

    missing: list[str]


class BlobStored(_Schema):
    """``PUT /v1/blobs/{digest}``: the blob is in the store."""

    digest: str
    size: int


class ModelEntry(_Schema):
    """A model registered in the store."""

    digest: str
    kind: ModelKind
    name: str | None = None
    size: int
    created: str


class ModelList(_Schema):
    """``GET /v1/models``."""

    models: list[ModelEntry]


JobState = Literal["queued", "running", "done", "failed"]


class JobStatus(_Schema):
    """A long request: poll ``GET /v1/jobs/{id}`` until ``status`` is ``done`` or ``failed``."""

    id: str
    kind: str
    status: JobState
    done: int = 0
    total: int = 0
    created: str
    finished: str | None = None
    result: Any = None
    error: str | None = None
    error_status: int | None = Field(None, description="the HTTP status the error would have had")


class JobAccepted(_Schema):
    """Answer of a request that outlived ``sync_wait_s`` (202) or was sent to ``/v1/jobs``."""

    job_id: str
    status: JobState
    poll: str


class JobRequest(_Schema):
    """``POST /v1/jobs``: run any long request in the background."""

    kind: Literal["fit", "hypotest", "upper-limit", "scan", "batch", "analyse"]
    request: dict[str, Any] = Field(..., description="the body the synchronous endpoint takes")


class Health(_Schema):
    """Liveness/readiness."""

    status: Literal["ok", "starting"]
    workers: int
    version: str


class ErrorMessage(_Schema):
    """Every error: one line (422 adds every schema error, each with its location)."""

    detail: str
    errors: list[dict[str, Any]] | None = None
