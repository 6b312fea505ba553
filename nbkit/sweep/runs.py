"""Every run and sweep under runs/, newest first: `nbkit runs [--json]` and runs/index.html."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nbkit import paths


def list_runs(root: Path | None = None) -> list[dict[str, Any]]:
    """One entry per run folder or sweep folder (a sweep's own points are listed inside its entry)."""
    from nbkit.sweep.compare import read_run

    root = root or paths.runs_root()
    entries = []
    if not root.is_dir():
        return entries
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        sweep_file = folder / "sweep.json"
        if sweep_file.is_file():
            data = json.loads(sweep_file.read_text())
            runs = data.get("runs", [])
            ok = sum(r.get("status") == "ok" for r in runs)
            entries.append({"kind": "sweep", "name": folder.name, "folder": str(folder), "date": _date(sweep_file),
                            "params_file": data.get("params_file"), "status": f"{ok}/{len(runs)} ok",
                            "headline": data.get("verdict"), "runs": len(runs)})
        elif list(folder.glob("[0-9][0-9]_*/status.json")):
            record = read_run(folder)
            params_file = None
            if (folder / "run.json").is_file():
                params_file = json.loads((folder / "run.json").read_text()).get("params_file")
            m = record.metrics
            headline = None
            if m.get("diff") is not None:
                headline = (f"tuned {m['tuned_reward']:.3f} vs base {m['base_reward']:.3f}, difference "
                            f"{m['diff']:+.3f} (95% CI {m['diff_lo']:+.3f} to {m['diff_hi']:+.3f})")
            entries.append({"kind": "run", "name": folder.name, "folder": str(folder), "date": _date(folder),
                            "params_file": params_file, "status": record.status, "headline": headline})
    return sorted(entries, key=lambda e: e["date"], reverse=True)


def _date(path: Path) -> str:
    """When the run last changed (its newest status file, or the sweep record), as ISO time."""
    files = [path] if path.is_file() else list(path.glob("[0-9][0-9]_*/status.json")) or [path]
    newest = max(f.stat().st_mtime for f in files)
    return datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds")


def write_index(entries: list[dict[str, Any]], root: Path | None = None) -> Path:
    """runs/index.html: the list as a page, each row linking to the run's or the sweep's own index."""
    root = root or paths.runs_root()
    rows = "".join(
        f'<tr><td>{html.escape(e["date"])}</td><td>{e["kind"]}</td>'
        f'<td><a href="{html.escape(Path(e["folder"]).name)}/index.html">{html.escape(e["name"])}</a></td>'
        f'<td>{html.escape(str(e.get("params_file") or "-"))}</td><td>{html.escape(e["status"])}</td>'
        f'<td>{html.escape(e.get("headline") or "-")}</td></tr>'
        for e in entries)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>RFT Workbench runs</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
th,td{{border-bottom:1px solid #d0d7de;padding:.4em .6em;text-align:left;vertical-align:top}}</style></head>
<body><h1>Runs and sweeps</h1><p>{len(entries)} under <code>{html.escape(str(root))}</code>, newest first.</p>
<table><tr><th>date</th><th>kind</th><th>name</th><th>params file</th><th>status</th><th>result</th></tr>{rows}
</table></body></html>"""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "index.html"
    path.write_text(page, encoding="utf-8")
    return path

