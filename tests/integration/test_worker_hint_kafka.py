"""A worker whose topics are missing names the command that creates them, with the app's ref."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from alto_stream.cli import app as cli

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def test_missing_topics_hint_names_the_app_as_given(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    ref = f"workers.textflow:build({unique_name('hint')!r})"
    result = CliRunner().invoke(
        cli, ["worker", ref, "shout"], env={"ALTO_BOOTSTRAP_SERVERS": kafka_bootstrap}
    )
    assert result.exit_code == 2
    assert "needs topics that do not exist" in result.stderr
    assert f"fix: `alto-stream topics apply {ref}` first" in " ".join(result.stderr.split())
