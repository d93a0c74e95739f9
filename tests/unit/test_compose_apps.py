"""compose.yaml's app services: every factcheck stage, topic and index jobs, a GPU profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alto_stream.components.llm import LLMConfig
from workers import factcheck

ROOT = Path(__file__).resolve().parents[2]
APP = "workers.factcheck:app"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return dict(data["services"])


def _workers(services: dict[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """Stage -> service, for the worker services of ``profile``."""
    found: dict[str, dict[str, Any]] = {}
    for service in services.values():
        command = service.get("command") or []
        if profile in service.get("profiles", []) and command[:2] == ["worker", APP]:
            stage = command[2]
            assert stage not in found, f"two services run {stage} in profile {profile}"
            found[stage] = service
    return found


@pytest.mark.parametrize("profile", ["app", "gpu"])
def test_every_stage_runs_once_per_profile(services: dict[str, Any], profile: str) -> None:
    stages = set(factcheck.app.topology().stages)
    workers = _workers(services, profile)
    assert set(workers) == stages
    for stage, service in workers.items():
        assert service["deploy"]["replicas"] >= 1, stage
        assert service["environment"]["ALTO_BOOTSTRAP_SERVERS"] == "kafka:9092"
        deps = service["depends_on"]
        assert deps["topics"]["condition"] == "service_completed_successfully"
        assert deps["index"]["condition"] == "service_completed_successfully"
    assert any(s["deploy"]["replicas"] > 1 for s in workers.values())


def test_topic_and_index_jobs(services: dict[str, Any]) -> None:
    topics, index = services["topics"], services["index"]
    assert topics["command"] == ["topics", "apply", APP]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert index["command"][:2] == ["index", "build"]
    out = index["command"][index["command"].index("--out") + 1]
    # Workers read the index where the job writes it, on the same volume.
    for service in _workers(services, "app").values():
        assert service["environment"]["ALTO_INDEX_DIR"] == out
        assert service["volumes"] == index["volumes"]
    assert topics["build"]["args"]["EXTRAS"] == "ml,llm"
    assert "ARG EXTRAS" in (ROOT / "Dockerfile").read_text()


def test_gpu_profile_points_the_llm_stages_at_vllm(services: dict[str, Any]) -> None:
    vllm = services["vllm"]
    assert vllm["profiles"] == ["gpu"]
    assert vllm["entrypoint"] == ["vllm", "serve"]
    assert "--scheduling-policy" in vllm["command"]
    assert vllm["command"][vllm["command"].index("--scheduling-policy") + 1] == "priority"
    port = vllm["command"][vllm["command"].index("--port") + 1]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    gpu = _workers(services, "gpu")
    cpu = _workers(services, "app")
    for stage in factcheck.LLM_STAGES:
        env = gpu[stage]["environment"]
        assert gpu[stage]["depends_on"]["vllm"]["condition"] == "service_healthy"
        assert env["ALTO_LLM_URL"] == f"http://vllm:{port}/v1"
        config = LLMConfig.from_env(env)  # the backend the worker will build
        assert config.backend == "openai" and config.priority
        assert "ALTO_LLM_BACKEND" not in cpu[stage]["environment"]  # llama.cpp by default
    for stage in set(gpu) - set(factcheck.LLM_STAGES):
        assert gpu[stage] is cpu[stage]  # one service in both profiles
