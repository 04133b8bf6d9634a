"""The NSBI backend: the project's statistical Model (``kind: Model``) on per-event ratio tables from the store.

A model is uploaded (or found in an archive) as a *bundle*: the Model document itself plus the digests of
the ``infer`` outputs (directories of Parquet tables with ``logr_<label>`` columns) and raw event files its
regions read. Loading fetches those tables once into the worker's scratch folder and builds the likelihood;
the warm model then keeps the best fit and the CLs profiles between requests, and a patch of the Model
document (a reinterpretation: new coefficients, yields, modifiers) reuses the loaded tables.

Statistics are the physics package's (``nsbiflow.physics.model.fit``: L-BFGS-B with autograd gradients,
Hessian errors, pyhf's q~ and Asimov conventions); the expected CLs band is the asymptotic formula on the
background-only Asimov q~ (Cowan et al. 2011, as pyhf computes it).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nsbiflow.errors import ArtifactNotFoundError, NsbiflowError, SpecError
from nsbiflow.service import schemas as api
from nsbiflow.service.backends.base import apply_patch, parameter_index
from nsbiflow.service.errors import BackendUnavailableError, BadModelError, ModelNotFoundError, ServiceError, first_line
from nsbiflow.service.schemas import DIGEST_PATTERN
from nsbiflow.store import ArtifactStore

BUNDLE_FORMAT = "nsbiflow/service-nsbi/v1"
EXPECTED_SIGMAS = (2.0, 1.0, 0.0, -1.0, -2.0)  # pyhf's order: the band from -2 sigma to +2 sigma in CLs


class EventFile(BaseModel):
    """A raw events file of a binned region (its name is the sample's, unless its metadata names one)."""

    model_config = ConfigDict(extra="forbid")

    digest: str = Field(..., pattern=f"^{DIGEST_PATTERN}$")
    filename: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.parquet$")


class NsbiBundle(BaseModel):
    """What the service stores for an NSBI model."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["nsbiflow/service-nsbi/v1"] = "nsbiflow/service-nsbi/v1"
    model: dict[str, Any] = Field(..., description="the Model document (kind: Model) as JSON")
    ratios: list[Annotated[str, Field(pattern=f"^{DIGEST_PATTERN}$")]] = Field(
        default_factory=list, description="digests of infer output directories"
    )
    events: list[EventFile] = Field(default_factory=list)



@contextlib.contextmanager
def _physics_errors(what: str) -> Iterator[None]:
    """Errors of the physics package become picklable one-line service errors."""
    try:
        yield
    except SpecError as exc:
        raise BadModelError(f"{what}: {first_line(exc)}") from None
    except ServiceError:
        raise
    except NsbiflowError as exc:
        raise ServiceError(f"{what}: {first_line(exc)}") from None


def bundle_document(model: dict[str, Any], ratios: list[str], events: list[dict[str, str]] | None = None) -> Any:
    """A bundle document (checked) from a Model document and store digests."""
    try:
        bundle = NsbiBundle(model=model, ratios=ratios, events=[EventFile(**e) for e in events or []])
    except ValidationError as exc:
        error = exc.errors()[0]
        raise BadModelError(f"bundle.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from None
    return bundle.model_dump(mode="json")


class NsbiModel:
    """A Model with its tables loaded and its likelihood built; profiles are kept warm between requests."""

    kind = "nsbi"

    def __init__(self, document: dict[str, Any], tables: dict[str, Any]) -> None:
        from nsbiflow.physics.model.likelihood import Likelihood
        from nsbiflow.physics.model.loader import model_from_data

        with _physics_errors("model"):
            self.model = model_from_data(document, "model")
            self.like = Likelihood(self.model, tables, "nsbi")
        self.document = document
        self.tables = tables
        self.names: list[str] = list(self.like.parameters.names)
        pois = self.model.pois()
        self.poi: str | None = pois[0] if pois else None
        self._best: Any = None
        self._cls: Any = None

    # -- structure --------------------------------------------------------------------------------
    def details(self) -> api.ModelDetails:
        """Parameters, regions and the loaded samples."""
        return api.ModelDetails(
            kind="nsbi", poi=self.poi, parameters=self.names,
            summary={
                "name": self.model.metadata.name,
                "pois": list(self.model.pois()),
                "regions": {name: region.type for name, region in self.model.regions.items()},
                "samples": {name: len(table) for name, table in sorted(self.tables.items())},
            },
        )

    def patched(self, patch: list[dict[str, Any]]) -> NsbiModel:
        """The Model document with an RFC 6902 patch applied, on the same loaded tables."""
        return NsbiModel(apply_patch(self.document, patch, "model"), self.tables)

    def _index(self, name: str) -> int:
        return parameter_index(self.names, name)

    def _require_poi(self) -> str:
        if self.poi is None:
            raise ServiceError("the model declares no parameter of interest")
        return self.poi

    def best(self) -> Any:
        """The global best fit (computed once per warm model)."""
        from nsbiflow.physics.model.fit import minimise

        if self._best is None:
            with _physics_errors("fit"):
                self._best = minimise(self.like)
        return self._best

    def _profiles(self) -> tuple[Any, Any]:
        from nsbiflow.physics.model.fit import cls_profiles

        if self._cls is None:
            with _physics_errors("CLs"):
                self._cls = cls_profiles(self.like, self._require_poi())
        return self._cls

    # -- operations --------------------------------------------------------------------------------
    def fit(self, options: api.FitOptions) -> api.FitResult:
        """Best fit with Hessian errors (``fixed`` parameters held)."""
        from nsbiflow.physics.model.fit import covariance, minimise

        for name in [*options.fixed, *options.init]:
            self._index(name)
        with _physics_errors("fit"):
            if not options.fixed and not options.init:
                minimum = self.best()
            else:
                start = self.like.point(options.init).numpy().copy()
                minimum = minimise(self.like, options.fixed or None, start)
            held = {self._index(n) for n in options.fixed}
            free, cov = covariance(self.like, minimum.x) if not held else self._conditional_cov(minimum.x, held)
        errors = {i: math.sqrt(max(float(cov[a, a]), 0.0)) for a, i in enumerate(free)}
        return api.FitResult(
            twice_nll=float(minimum.twice_nll),
            parameters=[api.ParameterValue(name=n, value=float(minimum.x[i]), error=errors.get(i))
                        for i, n in enumerate(self.names)],
        )

    def _conditional_cov(self, x: Any, held: set[int]) -> tuple[list[int], Any]:
        from nsbiflow.physics.model.fit import hessian

        free = [i for i in range(len(x)) if not self.like.parameters.fixed[i] and i not in held]
        h = hessian(self.like, x, free)
        try:
            return free, 2.0 * np.linalg.inv(h)
        except np.linalg.LinAlgError:
            return free, 2.0 * np.linalg.pinv(h)

    def _cls_at(self, mu: float) -> tuple[float, list[float]]:
        from scipy.stats import norm

        from nsbiflow.physics.model.fit import _qtilde, cls_value

        poi = self._require_poi()
        data, asimov = self._profiles()
        with _physics_errors("CLs"):
            observed = cls_value(data, asimov, poi, mu)
            sq_a = math.sqrt(max(_qtilde(asimov, poi, mu), 1e-300))
        expected = []
        for n in EXPECTED_SIGMAS:
            clb = float(norm.sf(n))
            expected.append(float(norm.sf(n + sq_a)) / clb if clb > 0 else 1.0)
        return observed, expected

    def hypotest(self, options: api.HypotestOptions) -> api.HypotestResult:
        """Asymptotic CLs (q~) at one POI value, with the expected band."""
        if options.test_stat != "qtilde":
            raise ServiceError("test_stat: NSBI models offer 'qtilde' only")
        observed, expected = self._cls_at(options.poi)
        return api.HypotestResult(poi=options.poi, test_stat="qtilde", cls_obs=observed, cls_exp=expected)

    def upper_limit(self, options: api.UpperLimitOptions) -> api.UpperLimitResult:
        """Observed and expected CLs upper limits: interpolated on ``scan``, or by root finding."""
        from scipy.optimize import brentq

        poi = self._require_poi()
        data, _ = self._profiles()
        index = self._index(poi)
        if options.scan is not None:
            grid = np.asarray(options.scan, dtype=float)
            values = np.array([[o, *e] for o, e in (self._cls_at(float(m)) for m in grid)])
            limits = [float(np.interp(options.level, values[::-1, k], grid[::-1])) for k in range(values.shape[1])]
            return api.UpperLimitResult(level=options.level, obs=limits[0], exp=limits[1:])
        lo = max(float(data.best.x[index]), 0.0) + 1e-6
        hi = float(self.like.parameters.bounds[index][1])

        def solve(k: int) -> float:
            def f(mu: float) -> float:
                observed, expected = self._cls_at(mu)
                return (observed if k == 0 else expected[k - 1]) - options.level

            low = 1e-6 if k else lo
            if f(low) < 0 or f(hi) > 0:
                return float("nan")
            return float(brentq(f, low, hi, xtol=1e-6, rtol=1e-8))

        limits = [solve(k) for k in range(6)]
        return api.UpperLimitResult(level=options.level, obs=limits[0], exp=limits[1:])

    def profile(self, options: api.ProfileOptions) -> api.ProfileResult:
        """``-2 ln L`` with one parameter fixed, the others fitted (started from the best fit)."""
        from nsbiflow.physics.model.fit import minimise

        name = options.parameter or self._require_poi()
        self._index(name)
        with _physics_errors("profile"):
            minimum = minimise(self.like, {name: options.value}, self.best().x)
        return api.ProfileResult(parameter=name, value=options.value, twice_nll=float(minimum.twice_nll))


    def analyse(self, options: api.AnalyseOptions) -> api.AnalyseResult:
        """One method of the ``fit`` step's analysis, computed by the function the step itself uses."""
        from nsbiflow.physics.model.run import MethodTask, analyse_method

        task = MethodTask(
            options.method,
            options.analyse.model_dump(),
            options.truth_config,
            options.observable,
            options.hist_bins,
            options.hist_interpolation,
            options.discriminant_null,
            options.discriminant_alt,
        )
        with _physics_errors(f"analyse {options.method}"):
            answer = analyse_method(self.model, self.tables, task)
        return api.AnalyseResult(method=options.method, answer=json.dumps(answer))


class NsbiBackend:
    """Loads NSBI bundles: the Model document plus the digests of its ratio tables and events."""

    kind = "nsbi"

    def available(self) -> str | None:
        """Why the backend cannot be used here, or None."""
        try:
            import nsbiflow.physics.model.fit  # noqa: F401
        except ModuleNotFoundError:
            return "this installation has no NSBI Model fit API (nsbiflow.physics.model)"
        return None

    def detect(self, document: Any) -> bool:
        """An NSBI bundle names its format."""
        return isinstance(document, dict) and document.get("format") == BUNDLE_FORMAT

    def load(self, store: ArtifactStore, document: Any, digest: str) -> NsbiModel:
        """Fetch the tables (once per worker) and build the warm model."""
        reason = self.available()
        if reason:
            raise BackendUnavailableError(f"nsbi models are not available in this server: {reason}")
        import torch

        from nsbiflow.physics.model.data import read_samples

        torch.set_num_threads(1)  # the workers are the parallelism (see physics/model/threads.py)
        try:
            bundle = NsbiBundle.model_validate(document)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise BadModelError(f"model {digest}: not an NSBI bundle: {where}: {error['msg']}") from None
        scratch = Path(tempfile.gettempdir()) / "nsbiflow-service"
        folders, files = [], []
        try:
            for ratio in bundle.ratios:
                what = f"ratios {ratio}"
                target = scratch / "trees" / ratio.split(":", 1)[1]
                if not (target / ".complete").exists():
                    store.fetch_tree(ratio, target)
                    (target / ".complete").touch()
                folders.append(target)
            for event in bundle.events:
                what = f"events {event.digest}"
                target = scratch / "files" / event.digest.split(":", 1)[1] / event.filename
                if not target.exists():
                    store.fetch_file(event.digest, target)
                files.append(target)
        except ArtifactNotFoundError:
            raise ModelNotFoundError(f"model {digest[:19]}: its {what} is not in the store {store.uri}") from None
        with _physics_errors(f"model {digest[:19]}"):
            tables, _ = read_samples(folders, files)
        return NsbiModel(bundle.model, tables)

    def expand_patchset(self, document: Any, patchset: Any, names: list[str] | None) -> list[tuple[str, list[Any]]]:
        """NSBI models take RFC 6902 ``patches`` of the Model document, not pyhf patchsets."""
        raise ServiceError("patchset: a pyhf patchset applies to pyhf workspaces; send NSBI model patches as patches")
