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


def _section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    return text[start:text.index("\n## ", start + 1)]


def _readme_commands() -> list[list[str]]:
    """Every `ecg-edge ...` command of the README's bash and sh blocks, as argv (continuations joined,
    comments and `time`/`do` prefixes dropped, `&&`/`;`-separated commands split)."""
    import shlex

    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line.split(" #")[0]):
                words = shlex.split(part, comments=True)
                while words and words[0] in ("time", "do", "then"):
                    words = words[1:]
                if words[:1] == ["ecg-edge"]:
                    commands.append(words[1:])
    return commands


def test_every_readme_command_parses_in_the_current_spelling(capsys) -> None:
    from ecg_edge.cli import build_parser

    commands = _readme_commands()
    assert len(commands) >= 45 and {c[0] for c in commands} >= {"data", "pretrain", "distill", "export", "package",
                                                                 "stream", "wearable"}
    for argv in commands:
        capsys.readouterr()
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"README: ecg-edge {' '.join(argv)}: {capsys.readouterr().err.strip()}") from exc
        assert "deprecated" not in capsys.readouterr().err, f"README: ecg-edge {' '.join(argv)}: an old spelling"


def test_command_line_section_lists_every_subcommand_and_old_spelling() -> None:
    from ecg_edge.cli import build_parser
    from ecg_edge.flags import Deprecated, leaves

    rows = [line for line in _section("Command line").splitlines() if line.startswith("| `")]
    for p in leaves(build_parser()):
        name = p.prog.removeprefix("ecg-edge ")
        assert any(row.startswith(f"| `{name}") for row in rows), f"README Command line: no row for {name}"
        for action in p._actions:
            if isinstance(action, Deprecated):
                old = action.option_strings[0] if action.option_strings else action.metavar
                assert any(f"`{name} " in row and f" {old}" in row for row in rows), \
                    f"README Command line: the old spelling {name} {old} is not listed"
