"""ecg-edge composition root: the one CLI (`ecg-edge`: flags -> typed options -> a library call -> print),
pipeline configs, the stream composition (`stream`: `StreamOptions` -> source, engine, sinks) and the
end-to-end demo. Library logic lives in the packages below it."""
__version__ = "0.1.0"
