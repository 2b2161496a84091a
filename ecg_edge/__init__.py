"""ecg-edge composition root: the one CLI (`ecg-edge`), pipeline configs and the end-to-end demo."""
__version__ = "0.1.0"
