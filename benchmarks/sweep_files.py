"""The sweep's files under ``--out``: writing them, reading them back, merging sweeps.

``sweep.json`` (every summary, bound, capacity, SLO; no rows), ``rows.csv`` (every
query), the plots and ``results.md`` (benchmarks/sweep_plots.py). ``--merge`` reads
sweeps written earlier and writes them as one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import appbench

__all__ = ["merge", "read", "write"]


def write(result: dict[str, Any], out: Path, cdf_load: str) -> None:
    """sweep.json, rows.csv, the plots and results.md under ``out``."""
    from benchmarks.sweep_plots import plot_all, results_table

    out.mkdir(parents=True, exist_ok=True)
    with (out / "rows.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        names = list(appbench.Row.__dataclass_fields__)
        writer.writerow(["app", "system", "load", "rate", "engine", *names])
        for app, entry in result["apps"].items():
            for name, system in entry["systems"].items():
                for load_name, rows in system["rows"].items():
                    rate = system["summaries"][load_name]["rate"]
                    for row in rows:
                        values = asdict(row)
                        writer.writerow(
                            [
                                app,
                                name,
                                load_name,
                                rate,
                                result["engine"],
                                *(values[n] for n in names),
                            ]
                        )
    plot_all(result, out, cdf_load)
    (out / "results.md").write_text(results_table(result), encoding="utf-8")
    bare = json.loads(json.dumps(result, default=lambda o: asdict(o)))
    for entry in bare["apps"].values():
        for system in entry["systems"].values():
            system.pop("rows", None)
    (out / "sweep.json").write_text(json.dumps(bare, indent=1) + "\n", encoding="utf-8")


def read(folder: Path) -> dict[str, Any]:
    """A sweep written by :func:`write` (``sweep.json`` with its ``rows.csv``)."""
    result: dict[str, Any] = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    kinds = {f.name: f.type for f in dataclasses.fields(appbench.Row)}
    with (folder / "rows.csv").open(newline="", encoding="utf-8") as file:
        for line in csv.DictReader(file):
            values: dict[str, Any] = {}
            for name, kind in kinds.items():
                text = line[name]
                if text == "":
                    values[name] = None if "None" in str(kind) else text
                elif "float" in str(kind):
                    values[name] = float(text)
                elif "int" in str(kind):
                    values[name] = int(text)
                else:
                    values[name] = text
            system = result["apps"][line["app"]]["systems"][line["system"]]
            system.setdefault("rows", {}).setdefault(line["load"], []).append(
                appbench.Row(**values)
            )
    return result


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The first sweep with the apps of the later ones put in (a later one wins an app).

    The sweeps must share the engine, its settings and the loads.
    """
    merged = results[0]
    for other in results[1:]:
        for key in ("engine", "engine_config", "loads"):
            if other[key] != merged[key]:
                raise SystemExit(f"cannot merge sweeps with different {key}: {other[key]!r}")
        merged["apps"].update(other["apps"])
        merged["command"] = f"{merged['command']}`, then `{other['command']}"
        merged["wall_s"] = merged.get("wall_s", 0.0) + other.get("wall_s", 0.0)
    return merged
