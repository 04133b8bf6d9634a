"""The pyhf backend: a HistFactory workspace (pyhf JSON), fitted with pyhf's numpy backend.

Settings follow ``pyhf cls`` exactly (code4 normsys and code4p histosys interpolation, the scipy optimizer
for hypotests), so the service's CLs values equal the command line's; best fits use Minuit for the
parameter uncertainties. The optimizer is global pyhf state: every worker runs one task at a time.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from nsbiflow.service import schemas as api
from nsbiflow.service.backends.base import apply_patch, parameter_index
from nsbiflow.service.errors import BadModelError, ServiceError, first_line
from nsbiflow.store import ArtifactStore

MODIFIER_SETTINGS = {"normsys": {"interpcode": "code4"}, "histosys": {"interpcode": "code4p"}}
"""The interpolation codes ``pyhf cls`` uses."""
WORKSPACE_KEYS = {"channels", "observations", "measurements", "version"}
WARM_UP_WORKSPACE: dict[str, Any] = {  # the smallest workspace: warms up workers and the server
    "version": "1.0.0",
    "channels": [{"name": "c", "samples": [
        {"name": "s", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
        {"name": "b", "data": [50.0], "modifiers": [{"name": "u", "type": "shapesys", "data": [5.0]}]}]}],
    "observations": [{"name": "c", "data": [52.0]}],
    "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}],
}


def warm_up_server() -> None:
    """Import pyhf and build its patchset validator in the server process (it expands batches' patchsets)."""
    import pyhf

    pyhf.PatchSet({
        "metadata": {"name": "warm-up", "description": "", "labels": ["x"], "references": {"hepdata": "ins0000000"},
                     "digests": {"sha256": pyhf.utils.digest(WARM_UP_WORKSPACE)}},
        "patches": [{"metadata": {"name": "p", "values": [0]}, "patch": []}], "version": "1.0.0",
    }).verify(WARM_UP_WORKSPACE)



@contextlib.contextmanager
def optimizer(name: str) -> Iterator[None]:
    """Use pyhf's ``scipy`` or ``minuit`` optimizer inside the block (numpy backend)."""
    import pyhf

    tensorlib, previous = pyhf.get_backend()
    wanted = pyhf.optimize.minuit_optimizer(verbose=0) if name == "minuit" else pyhf.optimize.scipy_optimizer()
    if type(previous) is type(wanted):
        yield
        return
    pyhf.set_backend(tensorlib, wanted)
    try:
        yield
    finally:
        pyhf.set_backend(tensorlib, previous)


@functools.lru_cache(maxsize=4)
def _workspace_validator(version: str) -> Any:
    """pyhf's workspace schema of ``version`` as one prebuilt validator.

    ``pyhf.schema.validate`` builds a new validator class and reference resolver on every call, which is
    most of the cost of building a patched model (about 5x the check itself). This is the same schema and
    the same Draft-6 check, built once per worker; the documents come from JSON, so pyhf's tensor-aware
    type checkers are not needed.
    """
    import pyhf
    from jsonschema import Draft6Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT6

    schema = pyhf.schema.load_schema(f"{version}/workspace.json")
    pyhf.schema.load_schema(f"{version}/defs.json")
    registry: Any = Registry().with_resources(
        (uri, Resource.from_contents(document, default_specification=DRAFT6))
        for uri, document in pyhf.schema.variables.SCHEMA_CACHE.items()
    )
    return Draft6Validator({"$ref": schema["$id"]}, registry=registry)


def check_workspace(spec: Any) -> None:
    """A one-line ``BadModelError`` unless ``spec`` is a valid pyhf workspace (its own schema version)."""
    import jsonschema
    import pyhf

    version = spec.get("version") if isinstance(spec, dict) else None
    try:
        validator = _workspace_validator(str(version))
    except pyhf.exceptions.SchemaNotFound:
        raise BadModelError(f"not a valid pyhf workspace: no schema version {version!r}") from None
    error = jsonschema.exceptions.best_match(validator.iter_errors(spec))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "the document"
        raise BadModelError(f"not a valid pyhf workspace: {where}: {first_line(error)}")


class PyhfModel:
    """A pyhf workspace, its model (the default measurement) and its observed data.

    The workspace is checked once against pyhf's schema (``check_workspace``); pyhf then builds it without
    checking it again (it validates the workspace and then the model spec it derives from it, each time
    building a new validator).
    """

    kind = "pyhf"

    def __init__(self, spec: dict[str, Any]) -> None:
        import pyhf

        if pyhf.get_backend()[0].name != "numpy":
            pyhf.set_backend("numpy")
        check_workspace(spec)
        try:
            self.workspace = pyhf.Workspace(spec, validate=False)
            self.model = self.workspace.model(modifier_settings=MODIFIER_SETTINGS, validate=False)
            self.data = self.workspace.data(self.model)
        except (pyhf.exceptions.InvalidSpecification, pyhf.exceptions.InvalidModel, KeyError, ValueError) as exc:
            raise BadModelError(f"not a valid pyhf workspace: {first_line(exc)}") from None
        self.spec = spec
        self.names: list[str] = list(self.model.config.par_names)

    # -- structure --------------------------------------------------------------------------------
    @property
    def poi(self) -> str | None:
        """Name of the parameter of interest."""
        return self.model.config.poi_name

    def details(self) -> api.ModelDetails:
        """Parameters and channels."""
        return api.ModelDetails(
            kind="pyhf",
            poi=self.poi,
            parameters=self.names,
            summary={
                "channels": list(self.model.config.channels),
                "samples": list(self.model.config.samples),
                "bins": int(sum(self.model.config.channel_nbins.values())),
                "measurement": self.workspace.get_measurement()["name"],
            },
        )

    def patched(self, patch: list[dict[str, Any]]) -> PyhfModel:
        """The workspace with an RFC 6902 patch applied (like a pyhf PatchSet patch)."""
        return PyhfModel(apply_patch(self.spec, patch, "workspace"))

    def _index(self, name: str) -> int:
        return parameter_index(self.names, name)

    def _poi_index(self, parameter: str | None = None) -> int:
        if parameter is not None:
            return self._index(parameter)
        if self.model.config.poi_index is None:
            raise ServiceError("the workspace's measurement declares no parameter of interest")
        return int(self.model.config.poi_index)

    def _starts(self, fixed: dict[str, float], init: dict[str, float]) -> tuple[list[float], list[bool]]:
        values = list(self.model.config.suggested_init())
        frozen = list(self.model.config.suggested_fixed())
        for name, value in init.items():
            values[self._index(name)] = float(value)
        for name, value in fixed.items():
            index = self._index(name)
            values[index] = float(value)
            frozen[index] = True
        return values, frozen

    # -- operations --------------------------------------------------------------------------------
    def fit(self, options: api.FitOptions) -> api.FitResult:
        """Best fit with Minuit uncertainties."""
        import pyhf

        init, fixed = self._starts(options.fixed, options.init)
        with optimizer("minuit"), _fit_errors():
            result, twice_nll = pyhf.infer.mle.fit(
                self.data, self.model, init_pars=init, fixed_params=fixed,
                return_uncertainties=True, return_fitted_val=True,
            )
        result = np.asarray(result)
        return api.FitResult(
            twice_nll=float(twice_nll),
            parameters=[
                api.ParameterValue(name=n, value=float(v), error=None if frozen else float(e))
                for n, (v, e), frozen in zip(self.names, result, fixed, strict=True)
            ],
        )

    def hypotest(self, options: api.HypotestOptions) -> api.HypotestResult:
        """``pyhf cls`` at one POI value."""
        import pyhf

        self._poi_index()
        with optimizer("scipy"), _fit_errors():
            observed, expected = pyhf.infer.hypotest(
                options.poi, self.data, self.model, test_stat=options.test_stat, return_expected_set=True
            )
        return api.HypotestResult(
            poi=options.poi, test_stat=options.test_stat, cls_obs=float(observed),
            cls_exp=[float(v) for v in np.asarray(expected).ravel()],
        )

    def upper_limit(self, options: api.UpperLimitOptions) -> api.UpperLimitResult:
        """Observed and expected CLs upper limits (root finding, or interpolation on ``scan``)."""
        import pyhf

        self._poi_index()
        scan = np.asarray(options.scan, dtype=float) if options.scan is not None else None
        with optimizer("scipy"), _fit_errors():
            observed, expected = pyhf.infer.intervals.upper_limits.upper_limit(
                self.data, self.model, scan=scan, level=options.level
            )
        return api.UpperLimitResult(
            level=options.level, obs=float(observed), exp=[float(v) for v in np.asarray(expected).ravel()]
        )

    def profile(self, options: api.ProfileOptions) -> api.ProfileResult:
        """``-2 ln L`` with ``parameter`` fixed at ``value``, every other free parameter fitted."""
        import pyhf

        index = self._poi_index(options.parameter)
        init, fixed = self._starts({}, {})
        init[index], fixed[index] = options.value, True
        with optimizer("scipy"), _fit_errors():
            _, twice_nll = pyhf.infer.mle.fit(
                self.data, self.model, init_pars=init, fixed_params=fixed, return_fitted_val=True
            )
        return api.ProfileResult(parameter=self.names[index], value=options.value, twice_nll=float(twice_nll))


    def analyse(self, options: api.AnalyseOptions) -> api.AnalyseResult:
        """The ``fit`` step's analysis is of NSBI models (kind: Model), not of pyhf workspaces."""
        raise ServiceError("analyse: the fit step's analysis needs an NSBI model bundle, not a pyhf workspace")


@contextlib.contextmanager
def _fit_errors() -> Iterator[None]:
    """A failed minimisation becomes one line naming the cause."""
    import pyhf

    try:
        yield
    except pyhf.exceptions.FailedMinimization as exc:
        raise ServiceError(f"the fit did not converge: {first_line(exc)}") from None
    except (ValueError, pyhf.exceptions.InvalidPdfParameters) as exc:
        raise ServiceError(f"pyhf refused the request: {first_line(exc)}") from None


class PyhfBackend:
    """Loads pyhf workspaces; expands pyhf PatchSets."""

    kind = "pyhf"

    def available(self) -> str | None:
        """pyhf is a core dependency: always available."""
        return None

    def detect(self, document: Any) -> bool:
        """A pyhf workspace has channels, observations, measurements and version."""
        return isinstance(document, dict) and set(document) >= WORKSPACE_KEYS

    def load(self, store: ArtifactStore, document: Any, digest: str) -> PyhfModel:
        """A warm pyhf model (the workspace is self-contained: nothing else is read from the store)."""
        if not self.detect(document):
            raise BadModelError(f"model {digest} is not a pyhf workspace (needs {', '.join(sorted(WORKSPACE_KEYS))})")
        return PyhfModel(document)

    def expand_patchset(self, document: Any, patchset: Any, names: list[str] | None) -> list[tuple[str, list[Any]]]:
        """The patches of a pyhf PatchSet, after checking its workspace digest against the model."""
        import pyhf

        try:
            patches = pyhf.PatchSet(copy.deepcopy(patchset))
        except (pyhf.exceptions.InvalidSpecification, KeyError, TypeError) as exc:
            raise ServiceError(f"patchset: not a valid pyhf patchset: {first_line(exc)}") from None
        try:
            patches.verify(document)
        except pyhf.exceptions.PatchSetVerificationError as exc:
            raise ServiceError(f"patchset: made for another workspace: {first_line(exc)}") from None
        known = [p.name for p in patches.patches]
        wanted = names if names is not None else known
        missing = [n for n in wanted if n not in known]
        if missing:
            raise ServiceError(f"names: the patchset has no patch {missing[0]!r} (patches: {', '.join(known[:10])})")
        by_name = {p.name: p for p in patches.patches}
        return [(name, list(by_name[name].patch)) for name in wanted]
