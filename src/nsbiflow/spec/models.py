"""Pydantic v2 models of a workflow and a step definition: the single source of truth for the spec.

Every model forbids unknown fields, so a typo in a YAML file is an error that names the field, never a
silently ignored key. The JSON Schema exported from these models (``nsbiflow schema``) is checked into
the repository (``src/nsbiflow/spec/schema/``) and a test fails when it drifts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

API_VERSION = "nsbiflow/v1"

NAME_PATTERN = r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$"
"""Step, parameter and workflow names: DNS-label-like, so they map onto Argo task and pod names."""

IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""Workflow parameter names: identifiers, since expressions refer to them as ``params.NAME``."""

IO_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

RESERVED_ENV = frozenset({"NSBIFLOW_STEP", "NSBIFLOW_RUN_ID", "PATH"})
"""Variables the runner owns; a step definition's ``env:`` may not set them."""

StepEnv = dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], str | None]
"""A step's declared environment: ``NAME: value``, or ``NAME: null`` to pass the runner's value through."""


def _check_env(env: dict[str, str | None]) -> dict[str, str | None]:
    reserved = sorted(set(env) & RESERVED_ENV)
    if reserved:
        raise ValueError(f"env: {reserved[0]} is set by the runner; remove it from the step's env")
    return env

_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")

ParamType = Literal["int", "float", "str", "bool", "list", "dict"]

KeysBy = dict[Annotated[str, Field(pattern=IDENT_PATTERN)], dict[str, list[str]]]
"""A dict parameter's ``keys_by``: other parameter -> its value -> the keys of the mapping that value needs."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


class ParameterSpec(_Strict):
    """A typed parameter with an optional default (a workflow parameter or a step parameter)."""

    type: ParamType = "str"
    default: Any = None
    description: str = ""
    choices: list[Any] | None = None
    keys_by: KeysBy | None = Field(
        None,
        description="step parameters of type dict only: which of the mapping's keys reach the step (and so its "
        "cache key), by the values of the step's other parameters: {parameter: {value: [keys]}}; a str parameter "
        "selects by its value, a list or dict parameter by each item or key, the keys kept are the union; a key "
        "named in no list always reaches the step, and a value no table names passes the whole mapping",
        exclude_if=lambda value: value is None,  # keys and digests of steps without it stay what they were
    )

    @model_validator(mode="after")
    def _default_matches_type(self) -> ParameterSpec:
        if self.default is not None and not _is_expression(self.default):
            self.default = coerce_value(self.type, self.default)
        if self.choices is not None and self.default is not None and self.default not in self.choices:
            raise ValueError(f"default {self.default!r} is not one of the choices {self.choices}")
        if self.keys_by is not None and self.type != "dict":
            raise ValueError(f"keys_by applies to parameters of type dict, not {self.type}")
        return self


def _check_keys_by(parameters: dict[str, ParameterSpec]) -> None:
    """Every ``keys_by`` of a step's parameters selects by other parameters of the same step."""
    for name, spec in parameters.items():
        for other in spec.keys_by or {}:
            if other == name or other not in parameters:
                known = ", ".join(sorted(set(parameters) - {name})) or "none"
                raise ValueError(f"parameter {name!r}: keys_by names {other!r}, not another parameter ({known})")


class IOSpec(_Strict):
    """A named input or output of a step: a single file or a directory tree."""

    kind: Literal["file", "dir"] = "file"
    description: str = ""
    multiple: bool = Field(False, description="input only: accepts a list (fan-in of a fanned-out step)")
    optional: bool = Field(False, description="input only: may be left unbound")
    filename: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="output only: the file name the step writes and consumers see (e.g. results.json)",
    )


def parse_quantity(value: str | int | float) -> float:
    """Parse a Kubernetes resource quantity (``500m``, ``2``, ``4Gi``, ``1.5G``) into a number.

    CPU quantities come back in cores, memory quantities in bytes. Raises ``ValueError`` on anything
    Kubernetes would reject.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid resource quantity {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"invalid resource quantity {value!r}: must not be negative")
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(
            f"invalid resource quantity {value!r}: use a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi"
        )
    number, suffix = float(match.group(1)), match.group(3) or ""
    factors = {
        "": 1.0,
        "m": 1e-3,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "P": 1e15,
        "E": 1e18,
        "Ki": 2.0**10,
        "Mi": 2.0**20,
        "Gi": 2.0**30,
        "Ti": 2.0**40,
        "Pi": 2.0**50,
        "Ei": 2.0**60,
    }
    return number * factors[suffix]


class Resources(_Strict):
    """What one instance of a step asks for: the local executor and the Argo compiler both honour it."""

    cpu: float | str = Field(1.0, description="cores (a Kubernetes quantity: 1, 2, 500m)")
    memory: str = Field("1Gi", description="a Kubernetes memory quantity: 512Mi, 4Gi")
    gpu: int = Field(0, ge=0, description="number of GPUs")
    node_pool: str | None = Field(None, description="node pool name from the cluster profile (e.g. gpu)")

    @field_validator("cpu", "memory")
    @classmethod
    def _valid_quantity(cls, value: str | float) -> str | float:
        parse_quantity(value)
        return value

    @property
    def cpu_cores(self) -> float:
        """CPU request in cores."""
        return parse_quantity(self.cpu)

    @property
    def memory_bytes(self) -> float:
        """Memory request in bytes."""
        return parse_quantity(self.memory)


class RetryPolicy(_Strict):
    """How often a failing step is retried, with exponential backoff."""

    limit: int = Field(0, ge=0, le=20)
    backoff_seconds: float = Field(2.0, ge=0)
    backoff_factor: float = Field(2.0, ge=1)


class StepDefinition(_Strict):
    """A reusable stage (``steps/<name>/step.yaml``): a containerized command with typed I/O."""

    api_version: Literal["nsbiflow/v1"] = Field("nsbiflow/v1", alias="apiVersion")
    kind: Literal["Step"] = "Step"
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    image: str = Field(..., min_length=1, description="container image; pin a digest for reproducibility")
    command: list[str] = Field(..., min_length=1)
    code: list[str] = Field(
        default_factory=list,
        description="what identifies the implementation in the cache key: 'python:PKG' (package source) "
        "or file paths relative to step.yaml",
    )
    parameters: dict[Annotated[str, Field(pattern=IDENT_PATTERN)], ParameterSpec] = Field(default_factory=dict)
    inputs: dict[Annotated[str, Field(pattern=IO_NAME_PATTERN)], IOSpec] = Field(default_factory=dict)
    outputs: dict[Annotated[str, Field(pattern=IO_NAME_PATTERN)], IOSpec] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: float | None = Field(None, gt=0, description="seconds before the step is killed")
    env: StepEnv = Field(
        default_factory=dict,
        description="environment variables of the step: NAME: value, or NAME: null to pass the runner's value "
        "through; nothing else of the runner's environment reaches a step beyond a small allowlist",
    )

    @field_validator("env")
    @classmethod
    def _env_not_reserved(cls, env: dict[str, str | None]) -> dict[str, str | None]:
        return _check_env(env)

    @model_validator(mode="after")
    def _outputs_are_single(self) -> StepDefinition:
        for name, spec in self.outputs.items():
            if spec.multiple or spec.optional:
                raise ValueError(f"output {name!r}: 'multiple' and 'optional' apply to inputs only")
        for name, spec in self.inputs.items():
            if spec.filename:
                raise ValueError(f"input {name!r}: 'filename' applies to outputs only")
        _check_keys_by(self.parameters)
        return self


class InlineStep(_Strict):
    """A step definition written inline in a workflow (``run:``); the name comes from the workflow."""

    description: str = ""
    image: str = Field(..., min_length=1)
    command: list[str] = Field(..., min_length=1)
    code: list[str] = Field(default_factory=list)
    parameters: dict[Annotated[str, Field(pattern=IDENT_PATTERN)], ParameterSpec] = Field(default_factory=dict)
    inputs: dict[Annotated[str, Field(pattern=IO_NAME_PATTERN)], IOSpec] = Field(default_factory=dict)
    outputs: dict[Annotated[str, Field(pattern=IO_NAME_PATTERN)], IOSpec] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: float | None = Field(None, gt=0)
    env: StepEnv = Field(
        default_factory=dict,
        description="environment variables of the step: NAME: value, or NAME: null to pass the runner's value "
        "through; nothing else of the runner's environment reaches a step beyond a small allowlist",
    )

    @model_validator(mode="after")
    def _keys_by_names_parameters(self) -> InlineStep:
        _check_keys_by(self.parameters)
        return self

    def as_definition(self, name: str) -> StepDefinition:
        """The equivalent named step definition."""
        return StepDefinition.model_validate({"name": name, **self.model_dump()})


class FileInput(_Strict):
    """An input taken from a file outside the store (hashed into the store at plan time)."""

    path: str = Field(..., min_length=1, description="relative to the workflow file")


InputBinding = str | FileInput | list[str]
"""``other.output`` (``other[KEY].output`` for one fan-out instance), a list of those, or ``{path: ...}``."""


class RangeSpec(_Strict):
    """``foreach: {range: N}`` or ``{range: [start, stop, step]}``."""

    range: int | str | list[int | str]


class MatrixSpec(_Strict):
    """``foreach: {matrix: {a: [...], b: [...]}}``: the cartesian product, items are mappings."""

    matrix: dict[Annotated[str, Field(pattern=IDENT_PATTERN)], list[Any] | str]


ForEach = list[Any] | str | RangeSpec | MatrixSpec


class WorkflowStep(_Strict):
    """One node of the DAG: a step definition (by name or inline) with bindings."""

    uses: str | None = Field(None, description="name of a step definition (steps/<name>/step.yaml)")
    run: InlineStep | None = Field(None, description="an inline step definition")
    description: str = ""
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="parameter bindings")
    inputs: dict[str, InputBinding] = Field(default_factory=dict)
    needs: list[str] = Field(default_factory=list, description="order-only dependencies")
    foreach: ForEach | None = Field(None, description="fan out over a list, a range or a matrix")
    resources: Resources | None = Field(None, description="override the definition's resources")
    retries: RetryPolicy | None = None
    timeout: float | None = Field(None, gt=0)
    loop: LoopSpec | None = Field(
        None,
        description="an iterative sub-DAG (see docs/workflows.md, 'Loops')",
        exclude_if=lambda value: value is None,  # digests of workflows without loops stay what they were
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> WorkflowStep:
        if self.loop is not None:
            check_loop_step(self)
            return self
        if (self.uses is None) == (self.run is None):
            raise ValueError(
                "give exactly one of 'uses' (a step definition name), 'run' (an inline definition) or 'loop'"
            )
        return self


class LoopSpec(_Strict):
    """``loop:``: a sub-DAG of steps run once per iteration until ``until`` holds or ``max_iterations`` is reached.

    Inside the body, ``loop.previous.STEP.OUTPUT`` (an input binding) is the previous iteration's artifact
    (unbound in the first iteration, so the input must be optional), and in ``${{ }}`` expressions
    ``loop.iteration`` (0, 1, ...), ``loop.first``, ``loop.current.STEP.OUTPUT`` and ``loop.previous.STEP.OUTPUT``
    are the parsed JSON of a file output of this or the previous iteration.
    """

    max_iterations: int = Field(..., ge=1, le=1000, description="hard stop: at most this many iterations")
    until: str = Field(
        ...,
        pattern=r"^\s*\$\{\{.*\}\}\s*$",
        description="a ${{ }} expression evaluated after each iteration; true stops the loop "
        "(e.g. ${{ loop.current.update.status.done }})",
    )
    steps: dict[Annotated[str, Field(pattern=NAME_PATTERN)], WorkflowStep] = Field(..., min_length=1)
    outputs: dict[Annotated[str, Field(pattern=IO_NAME_PATTERN)], str] = Field(
        ..., min_length=1, description="the loop's outputs: name -> 'step.output' of the body, from the last iteration"
    )


_NOT_FOR_LOOPS = ("uses", "run", "foreach", "resources", "retries", "timeout")


def check_loop_step(step: WorkflowStep) -> None:
    """A ``loop:`` step is only its body: the fields of an ordinary step belong to the body's steps."""
    for name in _NOT_FOR_LOOPS:
        if getattr(step, name) is not None:
            raise ValueError(f"a loop step takes no {name!r}; put it on a step of the loop's body")
    for name, value in (("with", step.with_), ("inputs", step.inputs), ("needs", step.needs)):
        if value:
            raise ValueError(f"a loop step takes no {name!r}; bind inputs on the steps of the loop's body")
    assert step.loop is not None
    for body_name, body in step.loop.steps.items():
        if body.loop is not None:
            raise ValueError(f"loop body step {body_name!r}: loops do not nest; flatten the inner loop")


LoopSpec.model_rebuild()
WorkflowStep.model_rebuild()


class Metadata(_Strict):
    """Workflow identity."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    version: str = "0"
    labels: dict[str, str] = Field(default_factory=dict)


class Interface(_Strict):
    """The reinterpretation (RECAST) interface: what a reinterpreter may change, and what the answer is."""

    parameters: list[str] = Field(default_factory=list, description="workflow parameters a patch may change")
    inputs: list[str] = Field(default_factory=list, description="'step.input' file inputs a patch may point elsewhere")
    results: list[str] = Field(default_factory=list, description="workflow outputs that are the answer")


class Workflow(_Strict):
    """An analysis: typed parameters and a DAG of steps."""

    api_version: Literal["nsbiflow/v1"] = Field("nsbiflow/v1", alias="apiVersion")
    kind: Literal["Workflow"] = "Workflow"
    metadata: Metadata
    parameters: dict[Annotated[str, Field(pattern=IDENT_PATTERN)], ParameterSpec] = Field(default_factory=dict)
    interface: Interface = Field(default_factory=Interface)
    outputs: dict[Annotated[str, Field(pattern=IO_NAME_PATTERN)], str] = Field(
        default_factory=dict, description="workflow outputs: name -> 'step.output'"
    )
    steps: dict[Annotated[str, Field(pattern=NAME_PATTERN)], WorkflowStep] = Field(..., min_length=1)

    @field_validator("parameters")
    @classmethod
    def _no_keys_by(cls, parameters: dict[str, ParameterSpec]) -> dict[str, ParameterSpec]:
        for name, spec in parameters.items():
            if spec.keys_by is not None:
                raise ValueError(f"parameter {name!r}: keys_by applies to step parameters, not workflow parameters")
        return parameters


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and "${{" in value


_ARTICLE = {
    "int": "an int",
    "float": "a float",
    "str": "a string",
    "bool": "a bool",
    "list": "a list",
    "dict": "a mapping",
}


def coerce_value(type_: ParamType, value: Any) -> Any:
    """Check and convert a parameter value to its declared type (strings from ``--set`` are parsed).

    Raises ``ValueError`` with a message that says what was expected.
    """
    import json

    if isinstance(value, str) and type_ not in ("str",):
        text = value.strip()
        if type_ == "bool":
            lowered = text.lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(f"expected a bool (true/false), got {value!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"expected {_ARTICLE[type_]}, got {value!r}") from None
    if type_ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"expected an int, got {value!r}")
        return value
    if type_ == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a float, got {value!r}")
        return float(value)
    if type_ == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected a bool, got {value!r}")
        return value
    if type_ == "list":
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {value!r}")
        return value
    if type_ == "dict":
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        return value
    if not isinstance(value, str):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"expected a string, got {value!r}")
    return value
