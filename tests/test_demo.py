"""The README's first command: scripts/demo runs the main job end to end, and converges."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_demo_applies_the_example_and_a_second_plan_is_empty() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "$ nsgsync apply" in done.stdout
    assert "A second plan has no changes" in done.stdout
