"""The shared command-line vocabulary of `ecg-edge` (README "Command line"): one meaning per flag.

  --data SPEC      a dataset: synthetic | ptbxl:PATH | cinc2017:PATH | mitdb:PATH
  --source SPEC    a live or replayed stream: replay:PATH | synthetic | ble:NAME_OR_ADDRESS
  --artifact PATH  one artifact (manifest.json, its folder or the model file); --artifacts DIR: a folder of them
  --teacher PATH / --student PATH   checkpoints; --arch NAME: a model registry name
  --fs HZ          the rate of the recording or source given; --device-fs HZ: the rate the device delivers
  --device         auto | cpu | cuda (auto: cuda when available); --method: ptq | qat | brevitas
  --out DIR        the output folder; --config FILE: a pipeline TOML (or a written config.json)

The mechanisms behind it, each once: `CliParser` (one-line errors, `--help` with every default),
`Deprecated` (an old spelling: one stderr line, then it sets what the new one would), `bind` (a flag
bound to a config key overrides that key of --config; `resolve_config` applies them, `command_table`
gives a command's table, `write_table` writes it), the shared flag helpers, the numeric `type=`s,
and `set_verbosity` (-v / -q). `ecg_edge.cli` builds the subcommands from these.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence


class Deprecated(argparse.Action):
    """An old spelling: one line on stderr naming the new one, then it sets what the new one would.

    `new`: the new spelling, as the line shows it; `target`: the dest the new spelling sets (default:
    this action's dest); `to(value, current)`: the value to set, from the old one and the one the
    new spelling already set (None if it did not)."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, target: str | None = None,
                 to: Callable[[Any, Any], Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new, self.target, self.to = new, target or dest, to

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is None and not self.option_strings:  # an optional positional that was not given
            return
        old = option_string or f"the positional {self.metavar or self.dest.upper()}"
        print(f"ecg-edge: deprecated: {old} is now {self.new} (the old spelling goes in a later release)",
              file=sys.stderr)
        value = self.to(values, getattr(namespace, self.target, None)) if self.to else values
        setattr(namespace, self.target, value)


def bind(p: argparse.ArgumentParser, table: str | None = None, **keys: str) -> None:
    """Bind flags of `p` to config keys: with `table`, every flag whose dest is a field of that table;
    `keys`: dest -> "table.field" for the others. A bound flag has no argparse default (the config's
    value is the default, shown by `--help`), and `resolve_config` applies the ones given."""
    from dataclasses import fields

    from ecg_edge.config import PipelineConfig

    if table:
        keys = {f.name: f"{table}.{f.name}" for f in fields(getattr(PipelineConfig(), table))} | keys
    bound = {}
    for action in p._actions:
        if action.dest in keys and not isinstance(action, Deprecated):
            action.default, action.config_key = argparse.SUPPRESS, keys[action.dest]
            bound[action.dest] = keys[action.dest]
    p.set_defaults(config_keys=bound, config_table=table)


def builtin_default(key: str) -> Any:
    """The built-in default of a config key ("export.n_boot" -> 1000)."""
    from ecg_edge.config import PipelineConfig

    value: Any = PipelineConfig()
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _with(obj: Any, path: Sequence[str], value: Any) -> Any:
    """`obj` (a config dataclass) with the field at `path` replaced (validated again by its class)."""
    if len(path) > 1:
        value = _with(getattr(obj, path[0]), path[1:], value)
    return replace(obj, **{path[0]: tuple(value) if isinstance(value, list) else value})


def resolve_config(args: argparse.Namespace):
    """`--config` (or the built-in defaults) with the bound flags given on the command line applied."""
    from ecg_edge.config import load_pipeline_config

    cfg = load_pipeline_config(getattr(args, "config", None))
    for dest, key in getattr(args, "config_keys", {}).items():
        if hasattr(args, dest):
            cfg = _with(cfg, key.split("."), getattr(args, dest))
    return cfg


def command_table(args: argparse.Namespace, *required: tuple[str, str]):
    """The command's table (`bind(p, table)`), resolved; `required`: (field, what it is) pairs that
    must be set, by their flag or by the table of --config."""
    from edge_runtime.errors import ConfigError

    table = getattr(resolve_config(args), args.config_table)
    for name, what in required:
        if getattr(table, name) is None:
            raise ConfigError(f"--{name.replace('_', '-')}: required ({what}), or {args.config_table}.{name} "
                              f"in --config")
    return table


def write_table(path: str | Path, args: argparse.Namespace, table: Any) -> Path:
    """The command's resolved table as JSON (`{"export": {...}}`); `--config PATH` runs it again."""
    from edge_runtime.config import write_json

    return write_json(path, {args.config_table: table})


class CliHelpFormatter(argparse.HelpFormatter):
    """Help that shows each default: a bound flag's built-in value and its config key, a plain
    flag's argparse default (unless its help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        key = getattr(action, "config_key", None)
        if key:
            value = builtin_default(key)
            shown = "" if value in (None, ()) or isinstance(value, bool) else \
                f"default: {' '.join(map(str, value)) if isinstance(value, tuple) else value}; "
            return f"{text} " + f"({shown}config key {key})".replace("%", "%%")
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            return f"{text} (default: %(default)s)"
        return text


class CliParser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: a bad flag value, an unknown flag or a missing
    argument prints `ecg-edge: error: <what>` and exits 2, without the usage block (`--help` still
    prints it, with every default). Subparsers are made with the parent's class, so every
    subcommand inherits this."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", CliHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ecg-edge: error: {' '.join(message.split())}\n")


def _number(kind: type, expected: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse `type=`: `kind(text)` if `ok`, else "argument --x: expected <expected>, got <text>"."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    parse.__name__ = expected  # argparse's fallback message names the type by it
    return parse


positive_int = _number(int, "a positive integer", lambda v: v > 0)
non_negative_int = _number(int, "a non-negative integer", lambda v: v >= 0)
positive_float = _number(float, "a positive number", lambda v: math.isfinite(v) and v > 0)
non_negative_float = _number(float, "a non-negative number", lambda v: math.isfinite(v) and v >= 0)
drop_fraction = _number(float, "a fraction 0 <= x < 1", lambda v: 0 <= v < 1)
label_fraction = _number(float, "a fraction 0 < x <= 1", lambda v: 0 < v <= 1)

DEVICES = ("auto", "cpu", "cuda")
METHODS = ("ptq", "qat", "brevitas")


def config_flag(p: argparse.ArgumentParser, tables: str) -> None:
    p.add_argument("--config", metavar="FILE", help=f"pipeline TOML ({tables}; see configs/) or the config.json a "
                   "run wrote; flags override it (default: built-in defaults)")


def out_flag(p: argparse.ArgumentParser, what: str, default: str | None = None) -> None:
    p.add_argument("--out", metavar="DIR", required=default is None, default=default, help=f"output folder: {what}")


def data_flag(p: argparse.ArgumentParser, what: str = "") -> None:
    from train.data.sources import DATASETS

    spec = " | ".join(f"{n}:PATH" if DATASETS.entry(n).tags.get("folder") else n for n in DATASETS)
    p.add_argument("--data", metavar="SPEC", help=f"the dataset: {spec}{f' ({what})' if what else ''}")


def device_flag(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--device", choices=DEVICES, default=default, help="where torch runs (auto: cuda when available)")


def verbosity_flags(p: argparse.ArgumentParser, default: Any = argparse.SUPPRESS) -> None:
    p.add_argument("-v", "--verbose", action="count", default=default,
                   help="print more: the project's INFO log lines (-vv: DEBUG)")
    p.add_argument("-q", "--quiet", action="count", default=default,
                   help="print less: results and errors only (no progress bars or notes)")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ecg-edge")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        from ecg_edge import __version__

        return __version__


def leaves(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand's parser (`data build`, `stream`, ...), depth first."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [p]
    return [leaf for s in subs for child in dict.fromkeys(s.choices.values()) for leaf in leaves(child)]


#: The project's loggers; -v / -q move each level from its default (the CLI's own notes: INFO).
LOGGERS = {"ecg_edge": logging.INFO, "edge_runtime": logging.WARNING, "train": logging.WARNING,
           "distill": logging.WARNING, "firmware_bridge": logging.WARNING}


class _Stderr(logging.Handler):
    """A log line as its bare message on the current sys.stderr (what logging's last resort printed)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def set_verbosity(level: int) -> None:
    """0: what the commands always printed; each -v one level more (DEBUG at most), -q one less."""
    for name, default in LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(min(max(default - 10 * level, logging.DEBUG), logging.CRITICAL))
        if not any(isinstance(h, _Stderr) for h in logger.handlers):
            logger.addHandler(_Stderr())
            logger.propagate = False
