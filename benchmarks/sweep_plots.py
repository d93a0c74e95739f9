"""The sweep's PNG plots (matplotlib, the ``bench`` extra) and its markdown results table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_all", "results_table"]


def _loads(system: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """The offered loads' summaries, by load fraction (the low-load run left out)."""
    return sorted((float(k), v) for k, v in system["summaries"].items() if k != "low")


def _emulated(result: dict[str, Any]) -> str:
    return " (EMULATED engine)" if result["engine"] == "emulated" else f" ({result['engine']})"


def plot_all(result: dict[str, Any], out: Path, cdf_load: str) -> list[Path]:
    """Per app: p50/p99 against load and the latency CDF; throughput at the SLO. The files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for app, entry in result["apps"].items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (name, system) in enumerate(entry["systems"].items()):
            points = _loads(system)
            xs = [x for x, _ in points]
            color = f"C{i}"
            ax.plot(xs, [s["p50_s"] for _, s in points], "--o", color=color, label=f"{name} p50")
            ax.plot(xs, [s["p99_s"] for _, s in points], "-s", color=color, label=f"{name} p99")
        ax.axhline(entry["bound"]["bound_s"], color="grey", linestyle=":", label="bound")
        if entry.get("slo_s"):
            ax.axhline(entry["slo_s"], color="red", linestyle=":", label="SLO")
        ax.set(
            xlabel="offered load (fraction of the engine's capacity)",
            ylabel="latency (s)",
            title=f"{app}: latency against load{_emulated(result)}",
        )
        ax.legend(fontsize=7)
        written.append(_save(fig, out / f"{app}-latency.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (name, system) in enumerate(entry["systems"].items()):
            rows = system["rows"].get(cdf_load, [])
            latencies = sorted(r.latency_s for r in rows if r.latency_s is not None)
            if latencies:
                share = [(k + 1) / len(rows) for k in range(len(latencies))]
                ax.step(latencies, share, where="post", color=f"C{i}", label=name)
        ax.set(
            xlabel="latency (s)",
            ylabel="share of queries",
            title=f"{app}: latency CDF at load {cdf_load}{_emulated(result)}",
        )
        ax.legend(fontsize=7)
        written.append(_save(fig, out / f"{app}-cdf.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    apps = list(result["apps"])
    names = list(result["systems"])
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = [
            result["apps"][a]["systems"].get(name, {}).get("throughput_at_slo_qps", 0.0)
            for a in apps
        ]
        ax.bar([j + i * width for j in range(len(apps))], values, width, label=name)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(apps))], apps)
    ax.set(ylabel="queries/s", title=f"throughput at the SLO{_emulated(result)}")
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "throughput-at-slo.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _admitted_table(result: dict[str, Any], loads: list[str]) -> list[str]:
    """Latency from admission (the wait in the input topic left out), for systems with one."""
    rows = []
    for app, entry in result["apps"].items():
        bound_s = entry["bound"]["bound_s"]
        for name, system in entry["systems"].items():
            cells = [app, name]
            for load in loads:
                s = system["summaries"].get(load, {})
                p99 = s.get("admitted_p99_s")
                cells.append(
                    f"{_f(s.get('admitted_p50_s'))} / {_f(p99)} "
                    f"({_f(p99 / bound_s if p99 is not None else None)}x), "
                    f"waited {_f(s.get('admission_wait_p50_s'))}"
                )
            if any("admitted_p99_s" in s for s in system["summaries"].values()):
                rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return []
    head = ["app", "system"] + [
        f"{load}: from admission p50 / p99 (p99 x bound), wait p50 (s)" for load in loads
    ]
    return [
        "",
        "Latency from admission (the wait in the input topic left out):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *rows,
    ]


def results_table(result: dict[str, Any]) -> str:
    """The markdown table of the sweep (for the README), with how it was measured."""
    loads = [f"{x:g}" for x in result["loads"]]
    head = ["app", "system", "bound / direct (s)", "low load p50 (x bound, x direct)"]
    for load in loads:
        head += [f"{load}: p50 / p99 (s)", f"{load}: SLO att."]
    head += ["throughput at SLO (q/s)"]
    lines = [
        f"Sweep of {result['date']}, engine: {result['engine']}"
        + (" (EMULATED: benchmarks/engine, no model)" if result["engine"] == "emulated" else "")
        + f", settings {result.get('engine_config', {})}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for app, entry in result["apps"].items():
        for name, system in entry["systems"].items():
            low = system["summaries"]["low"]
            cells = [
                app,
                name,
                f"{_f(entry['bound']['bound_s'])} / {_f(entry['bound'].get('direct_s'))}",
                f"{_f(low['p50_s'])} ({_f(system['low_load_p50_x_bound'])}x, "
                f"{_f(system.get('low_load_p50_x_direct'))}x)",
            ]
            for load in loads:
                s = system["summaries"].get(load, {})
                cells += [
                    f"{_f(s.get('p50_s'))} / {_f(s.get('p99_s'))}",
                    _f(s.get("slo_attainment")),
                ]
            cells.append(_f(system["throughput_at_slo_qps"], 3))
            lines.append("| " + " | ".join(cells) + " |")
    lines += _admitted_table(result, loads)
    lines += ["", "Per app: capacity (q/s) and SLO (s):", ""]
    for app, entry in result["apps"].items():
        lines.append(
            f"- {app}: capacity {entry['capacity_qps']:.3f} q/s "
            f"({entry['bound']['llm_calls_per_query']:.1f} LLM calls, "
            f"{entry['bound']['llm_tokens_per_query']:.0f} tokens per query), "
            f"SLO {_f(entry.get('slo_s'))} s, alto-admit's limit {entry.get('admission', '-')}"
        )
    if "command" in result:
        lines += ["", f"Command: `{result['command']}` ({result.get('wall_s', 0):.0f} s)."]
    return "\n".join(lines) + "\n"
