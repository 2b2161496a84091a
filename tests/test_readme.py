"""The README starts with the two commands for a fresh machine, and CI runs the second one."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _first_blocks(n: int) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)[:n]]


def test_readme_opens_with_main_job_and_tests() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = text.index("```bash")
    assert text[:first_block].strip() == "# ecg-edge"  # nothing before the two commands but the title
    main_job, tests = _first_blocks(2)
    assert "\n" not in main_job and "\n" not in tests
    assert main_job.endswith("ecg-edge demo") and "pip install" in main_job
    assert tests.endswith("pytest -q") and '".[all]"' in tests


def test_ci_runs_the_readme_test_command() -> None:
    _, tests = _first_blocks(2)
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()
