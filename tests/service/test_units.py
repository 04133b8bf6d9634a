"""Pieces of the service that need no server: the token check, references, the OpenAPI drift check."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from nsbiflow.service.auth import AuthConfigError, TokenChecker
from nsbiflow.service.schemas import MODEL_REF_PATTERN, BatchRequest, ScanRequest
from nsbiflow.service.settings import ServiceSettings

OPENAPI = Path(__file__).resolve().parents[2] / "src" / "nsbiflow" / "service" / "openapi.json"


def test_token_check_is_exact_and_bearer_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSBIFLOW_SERVICE_TOKEN", "  s3cret-token-0123456789\n")
    checker = TokenChecker(ServiceSettings())
    assert checker.check("Bearer s3cret-token-0123456789")
    assert checker.check("bearer s3cret-token-0123456789")
    for header in (None, "", "Bearer", "Bearer s3cret-token-012345678", "Bearer s3cret-token-01234567890",
                   "Basic s3cret-token-0123456789", "s3cret-token-0123456789"):
        assert not checker.check(header), header


def test_token_problems_refuse_to_start_without_showing_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NSBIFLOW_SERVICE_TOKEN", raising=False)
    with pytest.raises(AuthConfigError, match=r"no bearer token: set \$NSBIFLOW_SERVICE_TOKEN"):
        TokenChecker(ServiceSettings())
    monkeypatch.setenv("NSBIFLOW_SERVICE_TOKEN", "tiny-secret")
    with pytest.raises(AuthConfigError, match="shorter than 16") as short:
        TokenChecker(ServiceSettings())
    assert "tiny-secret" not in str(short.value)
    with pytest.raises(AuthConfigError, match="cannot read the token file"):
        TokenChecker(ServiceSettings(token_file=str(tmp_path / "missing")))
    assert TokenChecker(ServiceSettings(no_auth=True)).check(None)


def test_a_token_file_being_rewritten_keeps_the_last_good_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token-0123456789")
    checker = TokenChecker(ServiceSettings(token_file=str(token)))
    assert checker.check("Bearer first-token-0123456789")
    token.write_text("")  # half-written Secret update
    os.utime(token, (1, 1))
    assert checker.check("Bearer first-token-0123456789")
    token.write_text("second-token-0123456789")
    assert checker.check("Bearer second-token-0123456789") and not checker.check("Bearer first-token-0123456789")


@pytest.mark.parametrize("ref", ["sha256:" + "a" * 64, "toy-nsbi", "toy-nsbi@0123abcd", "toy.v2:workspace",
                                 "toy-nsbi@abcdef12:workspace/workspace.json"])
def test_model_references_that_are_accepted(ref: str) -> None:
    assert re.fullmatch(MODEL_REF_PATTERN, ref)
    assert ScanRequest(model=ref, start=0.0, stop=1.0).model == ref


@pytest.mark.parametrize("ref", ["", "/etc/passwd", "../x", "./x", "sha256:abc", "SHA256:" + "a" * 64, "a b",
                                 "file:///etc/passwd", "toy@xyz", "~root", "toy:/abs", "toy:" + "a" * 300])
def test_model_references_that_are_refused(ref: str) -> None:
    with pytest.raises(ValueError, match="model"):
        ScanRequest(model=ref, start=0.0, stop=1.0)


def test_request_models_check_what_json_schema_cannot() -> None:
    with pytest.raises(ValueError, match="stop must be greater than start"):
        ScanRequest(model="toy", start=1.0, stop=1.0)
    with pytest.raises(ValueError, match="exactly one of patchset or patches"):
        BatchRequest(model="toy")
    with pytest.raises(ValueError, match="names selects patches of a patchset"):
        BatchRequest.model_validate({"model": "toy", "patches": [], "names": ["a"]})


def test_openapi_document_is_checked_in_and_current() -> None:
    """``src/nsbiflow/service/openapi.json`` is the app's OpenAPI; regenerate with NSBIFLOW_REGEN_OPENAPI=1."""
    from nsbiflow.service.app import openapi_document

    current = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if os.environ.get("NSBIFLOW_REGEN_OPENAPI"):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("NSBIFLOW_REGEN_OPENAPI is refused in CI")
        OPENAPI.write_text(current)
    assert OPENAPI.exists(), "no openapi.json: run NSBIFLOW_REGEN_OPENAPI=1 pytest tests/service/test_units.py"
    assert OPENAPI.read_text() == current, "openapi.json is stale: run NSBIFLOW_REGEN_OPENAPI=1 pytest tests/service"
    document = json.loads(current)
    assert {"/v1/fit", "/v1/hypotest", "/v1/upper-limit", "/v1/scan", "/v1/batch", "/v1/models", "/v1/jobs",
            "/v1/jobs/{job_id}", "/v1/models/{ref}", "/healthz", "/readyz"} <= set(document["paths"])
    fit = document["paths"]["/v1/fit"]["post"]["responses"]
    assert {"200", "202", "401", "404", "413", "422"} <= set(fit)


def test_the_service_knows_every_method_of_the_fit_step() -> None:
    """The analyse route accepts exactly the fit step's methods (a new method must reach the service too)."""
    from typing import get_args

    from nsbiflow.physics.model.run import ALL_METHODS
    from nsbiflow.service.schemas import METHODS, AnalyseOptions

    assert METHODS == ALL_METHODS
    assert set(get_args(AnalyseOptions.model_fields["method"].annotation)) == set(ALL_METHODS)
