"""MAD: multi-modal partial-discharge classification (PRPD image + PD time series).

`build_model` and `load_model` are imported lazily so that data-only users
(the generator, readers) do not pay for importing the model code.
"""

from __future__ import annotations

from typing import Any

from mad.constants import CLASS_NAMES, NUM_CLASSES

__all__ = ["CLASS_NAMES", "NUM_CLASSES", "build_model", "load_model"]
__version__ = "0.1.0"

_LAZY = {
    "build_model": ("mad.model", "build_model"),
    "load_model": ("mad.runtime", "load_model"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'mad' has no attribute {name!r}")
