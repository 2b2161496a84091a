"""The bad-input corpus's one check, shared by its tables (tests/test_bad_inputs*.py).

A bad input must end the command with a non-zero exit status and exactly one `ecg-edge: error:`
line on stderr that names the file or field (`names`) and what was expected; no traceback, no
argparse usage block. The command runs in-process through `main(argv)`: an exception escaping
`main` is a traceback a user would have seen, and fails the case.
"""
from __future__ import annotations

from typing import Sequence

import pytest

from ecg_edge.cli import main


def assert_one_error_line(argv: Sequence[str], capsys: pytest.CaptureFixture, *names: str) -> str:
    """Run `ecg-edge argv`; assert the one-line failure naming each of `names`; return the line."""
    capsys.readouterr()  # what an earlier step printed is not this case's output
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse exits; other exceptions propagate and fail the case
        rc = exc.code
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ecg-edge: error: ")]
    shown = "\n".join(lines)
    assert rc not in (0, None), f"ecg-edge {' '.join(argv)}: exit status {rc!r} for a bad input; stderr:\n{shown}"
    assert len(errors) == 1, f"ecg-edge {' '.join(argv)}: expected one 'ecg-edge: error:' line, got:\n{shown}"
    assert "Traceback" not in out.err + out.out and not any(line.startswith("usage:") for line in lines), shown
    for name in names:
        assert name in errors[0], f"ecg-edge {' '.join(argv)}: the error line does not name {name!r}: {errors[0]}"
    return errors[0]
