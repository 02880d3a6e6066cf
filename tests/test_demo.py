"""`dope demo` at toy size: every stage runs, the report links real files, and a re-run resumes."""

from __future__ import annotations

import json

from dope_app.cli import main


def test_demo_writes_a_report_and_resumes(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--train_frames", "16", "--epochs", "1", "--test_frames", "2",
            "--size", "64", "--batch_size", "8", "--workers", "1", "--no-stream"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert "| 003_cracker_box |" in report and "AUC" in report
    for linked in ("accuracy_curve.png", "overlays.jpg"):
        assert f"]({linked})" in report and (out / linked).stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 2
    assert sorted(p.name for p in (out / "predictions").glob("*.json")) == ["000000.json", "000001.json"]
    checkpoints = sorted((out / "run" / "checkpoints").glob("*.pt"))
    assert checkpoints
    mtime = checkpoints[-1].stat().st_mtime
    assert main(args) == 0  # finished stages are skipped: no new training
    assert sorted((out / "run" / "checkpoints").glob("*.pt"))[-1].stat().st_mtime == mtime
    stages = json.loads((out / "stages.json").read_text())
    assert "already trained" in stages[0]["detail"]
