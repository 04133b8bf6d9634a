"""Fixtures of the physics tests: stages run in-process through the ``nsbiflow-step`` click group, and one
small end-to-end chain shared by the tests that need trained ensembles."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from nsbiflow.stepcli.main import main

# small networks gain nothing from intra-op threads, and spin-waiting threads crawl on a loaded machine
os.environ.setdefault("OMP_NUM_THREADS", "1")

TOY_MODEL = Path(__file__).resolve().parents[2] / "workflows" / "models" / "toy.yaml"
PROCESSES = ("signal", "background", "background_up", "background_down", "reference")
LABELS = ("signal", "background", "background_up", "background_down")
DENOMINATOR = {
    "signal": "reference",
    "background": "reference",
    "background_up": "background",
    "background_down": "background",
}


@dataclass
class StepRun:
    """Result of one stage invocation."""

    exit_code: int
    stdout: str
    stderr: str


def run_step(
    name: str,
    params: dict[str, object] | None = None,
    inputs: Sequence[tuple[str, Path]] = (),
    outputs: dict[str, Path] | None = None,
) -> StepRun:
    """Invoke ``nsbiflow-step NAME`` with the step contract's arguments; creates dir outputs' parents."""
    import json

    args = [name]
    for key, value in (params or {}).items():
        args += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    for key, path in inputs:
        args += ["--in", f"{key}={path}"]
    for key, path in (outputs or {}).items():
        args += ["--out", f"{key}={path}"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return StepRun(result.exit_code, result.stdout, result.stderr)


def must(run: StepRun) -> StepRun:
    """Fail the test with the stage's error line when it did not succeed."""
    assert run.exit_code == 0, run.stderr
    return run


@dataclass
class Chain:
    """Paths of a finished small chain."""

    root: Path
    seed: int

    def events(self, process: str, split: str = "events") -> Path:
        return self.root / "samples" / f"{process}.{split}.parquet"

    def ensemble(self, label: str) -> Path:
        return self.root / f"ensemble-{label}"

    @property
    def ratios(self) -> Path:
        return self.root / "ratios"

    @property
    def results(self) -> Path:
        return self.root / "results.json"


SMALL = {"n_events": 6000, "n_holdout": 6000}
TRAIN = {"members": 2, "hidden": [32, 32], "max_epochs": 25, "patience": 4}


def generate_sample(root: Path, process: str, seed: int, **extra: object) -> tuple[Path, Path]:
    """Simulate one process into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    events, holdout = root / f"{process}.events.parquet", root / f"{process}.holdout.parquet"
    must(
        run_step(
            "generate",
            {"process": process, "seed": seed, **SMALL, **extra},
            outputs={"events": events, "holdout": holdout},
        )
    )
    return events, holdout


def train(chain: Chain, label: str, chunk: int, out: Path, **extra: object) -> Path:
    """Train one chunk of an ensemble."""
    out.mkdir(parents=True)
    must(
        run_step(
            "train-ratio",
            {"label": label, "chunk": chunk, "seed": chain.seed * 100 + chunk, **TRAIN, **extra},
            [("numerator", chain.events(label)), ("reference", chain.events(DENOMINATOR[label]))],
            {"ensemble": out},
        )
    )
    return out


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """The whole chain on a CI-small toy: generate, support, train (2 chunks), gather, calibrate, infer, fit."""
    root = tmp_path_factory.mktemp("chain")
    c = Chain(root, seed=3)
    for process in PROCESSES:
        generate_sample(root / "samples", process, c.seed)
    observed = root / "samples" / "observed.parquet"
    must(run_step("generate-data", {"seed": c.seed, "mu": 1.0}, outputs={"events": observed}))
    (root / "support").mkdir()
    must(
        run_step(
            "support",
            {"seed": c.seed, "max_ratio": 6.0, "max_epochs": 10},
            [("reference", c.events("reference")), *[("samples", c.events(p)) for p in LABELS]],
            {"support": root / "support"},
        )
    )
    for label in LABELS:
        chunks = [train(c, label, k, root / f"chunk-{label}-{k}") for k in (0, 1)]
        c.ensemble(label).mkdir()
        must(
            run_step("gather-ensemble", inputs=[("chunks", p) for p in chunks], outputs={"ensemble": c.ensemble(label)})
        )
        (root / f"report-{label}").mkdir()
        must(
            run_step(
                "calibrate",
                {"max_chi2_ndf": 5.0, "advisory": ["ratio_closure", "two_sample"]},  # CI-small ensembles
                [
                    ("ensemble", c.ensemble(label)),
                    ("numerator", c.events(label, "holdout")),
                    ("reference", c.events(DENOMINATOR[label], "holdout")),
                ],
                {"report": root / f"report-{label}"},
            )
        )
    c.ratios.mkdir()
    must(
        run_step(
            "infer",
            {"batch_size": 2500},
            [
                *[("ensembles", c.ensemble(label)) for label in LABELS],
                ("support", root / "support"),
                ("data", observed),
                *[("samples", c.events(p, "holdout")) for p in PROCESSES],
            ],
            {"ratios": c.ratios},
        )
    )
    (root / "plots").mkdir()
    must(
        run_step(
            "fit",
            {"injected": {"mu": 1.0}},
            [
                ("model", TOY_MODEL),
                ("ratios", c.ratios),
                *[("diagnostics", root / f"report-{label}") for label in LABELS],
            ],
            {"results": c.results, "workspace": root / "workspace.json", "plots": root / "plots"},
        )
    )
    return c
