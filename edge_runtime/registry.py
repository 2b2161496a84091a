"""The one registry style of the project: a name -> entry table filled by a decorator.

    BACKENDS: Registry[type] = Registry("backend")

    @BACKENDS.register("onnxruntime", runtime="onnxruntime")   # tags: whatever the table needs
    class OnnxRuntimeBackend(Backend): ...

    BACKENDS.entry("onnxruntime").obj        # the registered object; .name, .doc, .runtime (a tag)
    BACKENDS.names(runtime="litert")         # names in registration order, filtered by tags

Four tables use it: models (`train.models`), objectives (`train.objectives`), inference backends
(`edge_runtime.backends`) and datasets (`train.data.sources`). An unknown name raises
`ConfigError` naming the choices. `load`, when given, is called before every lookup: it imports
the modules whose decorators fill the table (the models registry imports torch only then).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

from edge_runtime.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object: `obj` (a factory, class or opener), the first line of its docstring,
    and the tags it was registered with, readable as attributes (`entry.kind`)."""

    name: str
    obj: T
    doc: str = ""
    tags: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, key: str) -> Any:
        tags = self.__dict__.get("tags", {})
        if key in tags:
            return tags[key]
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('name')!r} has no attribute or tag {key!r}")


class Registry(Generic[T]):
    """Name -> `Entry` for one kind of thing (`what` names it in error messages)."""

    def __init__(self, what: str, load: Callable[[], None] | None = None) -> None:
        self.what = what
        self._load = load
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str | None = None, **tags: Any) -> Callable[[T], T]:
        """Decorator: register `obj` under `name` (default: its `__name__`) with `tags`. Stack it to
        register one object under several names."""

        def wrap(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            old = self._entries.get(key)
            if old is not None and old.obj is not obj:
                raise ConfigError(f"{self.what}: {key!r} is registered twice")
            lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._entries[key] = Entry(key, obj, lines[0] if lines else "", dict(tags))
            return obj

        return wrap

    def _loaded(self) -> dict[str, Entry[T]]:
        if self._load is not None:
            self._load()
        return self._entries

    def names(self, pattern: str = "*", **tags: Any) -> list[str]:
        """Registered names matching the fnmatch `pattern` and every given tag, in registration order."""
        return [n for n, e in self._loaded().items()
                if fnmatch.fnmatchcase(n, pattern) and all(e.tags.get(k) == v for k, v in tags.items())]

    def entry(self, name: str) -> Entry[T]:
        """The entry of `name`; ConfigError naming the registered choices otherwise."""
        entries = self._loaded()
        if name not in entries:
            raise ConfigError(f"{self.what}: unknown name {name!r}; expected one of {', '.join(entries)}")
        return entries[name]

    def get(self, name: str) -> T:
        """The object registered as `name` (`entry(name).obj`)."""
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._loaded()))

    def __len__(self) -> int:
        return len(self._loaded())
