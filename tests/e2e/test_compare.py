"""The compare view in a real browser, against the real server (issue 15, item 5): a version's
page shows the previous approved version card computed when read, "Compare with…" opens the
side-by-side view with every latency's interval, and the view also answers by URL."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from apps.approvals import services as approvals
from tests.e2e.conftest import CHROMIUM, SCREENSHOTS
from tests.factories import RegisteredModelFactory
from tests.measured import measured_version

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-tests"  # tests/factories.py gives every user this one
DRIVER = Path(__file__).with_name("compare.mjs")


def test_compare_two_versions_and_two_variants_in_a_real_browser(personas, app_server, tmp_path):
    model = RegisteredModelFactory(team=personas.team, name="scorer", slug="scorer", created_by=personas.owner)
    int8 = {"ms": 2.0, "cosine": 0.999, "max_abs": 0.02, "size": 4000}
    first = measured_version(team=personas.team, uploader=personas.owner, model=model, variants={"ort-int8": int8})
    second = measured_version(
        team=personas.team,
        uploader=personas.owner,
        model=model,
        seed=10,
        variants={"ort-int8": {**int8, "ms": 1.0, "size": 1000}},
    )
    approvals.approve(first, personas.approver)

    env = {
        **os.environ,
        "BASE_URL": app_server,
        "USERNAME": personas.viewer.username,
        "PASSWORD": PASSWORD,
        "SHOTS": str(SCREENSHOTS),
        "WORK": str(tmp_path),
        "CHROMIUM": str(CHROMIUM),
        "VERSION_ID": str(second.pk),
        "PREVIOUS_ID": str(first.pk),
        "MODEL_NAME": "scorer",
    }
    done = subprocess.run(["node", str(DRIVER)], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    found = json.loads(lines[-1]) if lines else {}
    assert done.returncode == 0, (
        f"the compare view failed in the browser: {found.get('error') or done.stderr[-3000:]}\n"
        f"at {found.get('url')}\npage text:\n{found.get('page_text', '')}\nsteps done: {found.get('steps')}\n"
        f"console: {found.get('console_errors')}"
    )
    assert not found["console_errors"], found["console_errors"]

    # The card on v2's page: computed now, against v1 approved after v2's pipeline ran.
    assert found["previous_card"].startswith("Against approved v1: ✓"), found["previous_card"]
    assert "faster by CPU time per inference" in found["previous_card"]
    assert found["previous_rows"] >= 8

    # "Compare with…" starts from the previous approved version and opens the side-by-side view.
    assert found["compare_with_default"] == str(first.pk)
    assert found["compare_url"] == f"/app/compare?a={first.pk}&b={second.pk}&profile=x86-cpu"
    assert found["summary"].startswith("scorer v2 (ort-int8) against scorer v1 (ort-int8): "), found["summary"]
    assert found["headers"][1:] == ["A · scorer v1 · ort-int8", "B · scorer v2 · ort-int8", "B against A"]
    rows = found["rows"]
    for label in ("p50 latency", "p99 latency", "CPU time per inference (headline)"):
        a, b, change = rows[label]
        assert "95%: " in a and "95%: " in b, (label, rows[label])
        assert change.endswith("faster"), (label, change)
    assert rows["Throughput"][2].endswith("higher")
    assert rows["y cosine"][:2] == ["0.999", "0.999"] and rows["y cosine"][2].endswith("same")
    assert rows["Size"][2].endswith("smaller")

    # By URL, two variants of one version: the original is slower, and further from nothing.
    assert found["variants_summary"].startswith("scorer v2 (ort-int8) against scorer v2 (original): ")
    assert found["variants_rows"]["Variant"][0].startswith("original")
    assert found["variants_rows"]["y cosine"][2].endswith("further")

    # A reference that names nothing: the API's sentence, not a blank page.
    assert "'scorer' (a=) does not name a version or a variant" in found["refusal"]
    assert (SCREENSHOTS / "compare.png").stat().st_size > 10_000
