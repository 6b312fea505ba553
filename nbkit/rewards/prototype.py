"""Notebook 02 in one call: load a reward, probe it on the run's data, check the contract and latency,
package it for Lambda, and write `<run>/reward/report.json` (+ `lambda.zip`)."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit.layout import LAMBDA_ZIP, REPORT, RunLayout, portable
from nbkit.plain import json_safe
from nbkit.rewards.harness import HarnessReport
from nbkit.rewards.loader import Reward, load_reward
from nbkit.rewards.probes import ProbeReport, run_probes

if TYPE_CHECKING:
    from nbkit.params import PrototypeRewardParams


@dataclass
class Prototype:
    """Everything notebook 02 shows about one reward."""

    reward: Reward
    records: list[dict]
    probes: ProbeReport
    settings: dict[str, Any]
    package: dict[str, Any] = field(default_factory=dict)
    report_path: Path | None = None

    @property
    def contract(self) -> HarnessReport:
        return self.probes.harness

    def overview(self) -> Any:
        """Key facts as a two-column table (plain text in static reports too)."""
        import pandas as pd

        d = self.probes.discrimination
        rows = [
            ("reward", self.reward.name), ("source", self._source_text()),
            ("records probed", len(self.records)), ("responses scored", len(self.probes.cases)),
            ("ok", f"{self.contract.summary['ok']}/{self.contract.summary['total']}"),
            ("failures", self.probes.failure.sentence("probe responses") if self.probes.failure else "none"),
            ("AUC good vs bad", f"{d['auc']:.3f}"), ("separation", f"{d['separation']:.3f}"),
            ("gameable by", ", ".join(self.probes.gameable) or "nothing"),
            ("fails to credit", ", ".join(self.probes.rejects_good) or "nothing"),
            ("good answers written as", f"{self.probes.template.text} ({self.probes.template.origin})"
             if self.probes.template else "the default formats (no template given or stated in the prompts)"),
            ("deterministic", (self.contract.determinism or {}).get("deterministic")),
            ("lambda package", self.package_facts().get("path") or self.package.get("skipped", "")),
        ]
        return pd.DataFrame(rows, columns=["", "value"]).set_index("")

    def package_facts(self) -> dict[str, Any]:
        """The Lambda package for a report: its path inside the run folder (reward/lambda.zip), not on disk."""
        facts = dict(self.package)
        if facts.get("path"):
            facts["path"] = portable(facts["path"], Path(facts["path"]).parent.parent)
        return facts

    def _source_text(self) -> str:
        if self.reward.grader is not None and self.reward.source is not None:
            return f"built-in grader, packaged as {self.reward.source.name} (nbkit/rewards/graders.py + entry point)"
        return str(self.reward.source or "(none: built in Python, not packageable)")

    def contract_table(self) -> Any:
        """Count per status, with an example error for each failing one."""
        import pandas as pd

        first_error: dict[str, str] = {}
        for r in self.contract.results:
            if r.status != "ok":
                first_error.setdefault(r.status, f"{r.id}: {r.error}")
        summary = self.contract.summary
        return pd.DataFrame([{"status": s, "samples": n, "example": first_error.get(s, "")}
                             for s, n in summary.items() if s != "total"])

    def latency_table(self) -> Any:
        """Per call and per sample latency in milliseconds, with throughput."""
        import pandas as pd

        lat = self.contract.latency
        rows = [{"per": per, **{k: v * 1e3 for k, v in lat[f"per_{per}_s"].items()}} for per in ("call", "sample")]
        frame = pd.DataFrame(rows).set_index("per").add_suffix(" (ms)").round(3)
        frame["throughput (samples/s)"] = round(lat["throughput_per_s"])
        return frame

    def flagged_examples(self, limit: int = 2) -> Any:
        """The evidence behind each flag: the highest-scoring bad responses, the lowest-scoring good ones."""
        import pandas as pd

        rows = []
        for probe in self.probes.gameable:
            rows += [r for r in self.probes.examples(probe, limit) if r["high"]]
        for probe in self.probes.rejects_good:
            mine = sorted((r for r in self.probes.rows if r["probe"] == probe), key=lambda r: r["score"] or 0)
            rows += mine[:limit]
        columns = ["probe", "expect", "record_id", "score", "status", "response"]
        return pd.DataFrame([{c: r[c] for c in columns} for r in rows], columns=columns)

    def headline(self) -> str:
        s, d, lat = self.contract.summary, self.probes.discrimination, self.contract.latency
        failure = self.probes.failure
        if failure is not None and failure.most:  # the cause first: every number after it rests on the rest
            parts = [f"{self.reward.name}: {failure.sentence('probe responses')}",
                     f"AUC {d['auc']:.2f} good vs bad on the {s['ok']} scored"]
            if self.probes.gameable:
                parts.append(f"GAMEABLE by {', '.join(self.probes.gameable)}")
            return "; ".join(parts) + "."
        parts = [f"{self.reward.name}: {s['ok']}/{s['total']} probe responses scored ok",
                 f"AUC {d['auc']:.2f} good vs bad"]
        parts.append(f"GAMEABLE by {', '.join(self.probes.gameable)}" if self.probes.gameable
                     else "no bad probe scores high")
        if self.probes.rejects_good:
            parts.append(f"fails to credit {', '.join(self.probes.rejects_good)}")
        parts.append(f"p95 {lat['per_call_s']['p95'] * 1e3:.1f} ms per call")
        return "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        probes = self.probes.to_dict()
        probes.pop("contract")  # reported once, at the top level
        return json_safe({
            "reward": {"name": self.reward.name, "spec": self.reward.spec,
                       "source": str(self.reward.source) if self.reward.source else None},
            "settings": self.settings, "records": len(self.records), "headline": self.headline(),
            "contract": self.contract.to_dict(results=False), "probes": probes, "package": self.package,
        })

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT
        path.write_text(json.dumps(portable(self.to_dict(), folder.parent), indent=2, allow_nan=False))
        self.report_path = path
        return path


def package_info(reward: Reward, folder: Path) -> dict[str, Any]:
    """Package the reward into folder/lambda.zip; a reward that cannot run in Lambda says why instead."""
    from nbkit.errors import UserError
    from nbkit.rewards.lambda_deploy import package_reward, plan_package

    try:
        plan = plan_package(reward)
    except UserError as exc:
        return {"skipped": str(exc)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # third-party imports are reported in the dict below
        path = package_reward(reward, folder / LAMBDA_ZIP)
    data = path.read_bytes()
    return {"path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            **plan.to_dict()}


def prototype_reward(reward: Any, records: list[dict], *, out_dir: Path | None = None, variant: str = "sagemaker",
                     batch_size: int = 16, workers: int = 1, timeout_s: float = 30.0, threshold: float = 0.5,
                     seed: int = 0, package: bool = True, good: dict | None = None, bad: dict | None = None,
                     progress: bool = False, good_template: str = "") -> Prototype:
    """Probe, check and (optionally) package one reward; with `out_dir`, write report.json and lambda.zip."""
    reward = load_reward(reward)
    probes = run_probes(reward, records, good=good, bad=bad, threshold=threshold, variant=variant,
                        batch_size=batch_size, workers=workers, timeout=timeout_s, seed=seed, progress=progress,
                        check_determinism=True, good_template=good_template)
    settings = {"variant": variant, "batch_size": batch_size, "workers": workers, "timeout_s": timeout_s,
                "threshold": threshold, "seed": seed, "good_template": good_template}
    proto = Prototype(reward, records, probes, settings)
    if out_dir is not None:
        if package:
            proto.package = package_info(reward, out_dir)
        proto.write(out_dir)
    return proto


def run(p: PrototypeRewardParams, progress: bool = True) -> Prototype:
    """Notebook 02's stage: the first `num_samples` records of the run's split, prototyped into <run>/reward/."""
    from nbkit.data import load_split

    records = load_split(p.run_dir, p.split)[: p.num_samples]
    return prototype_reward(p.reward, records, out_dir=RunLayout(p.run_dir).stage("reward"), variant=p.variant,
                            batch_size=p.batch_size, workers=p.workers, timeout_s=p.timeout_s,
                            threshold=p.threshold, seed=p.seed, package=p.package, progress=progress,
                            good_template=p.good_template)
