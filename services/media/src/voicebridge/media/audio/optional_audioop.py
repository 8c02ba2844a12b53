"""The stdlib `audioop` where this Python still has it (3.11, 3.12), else None (3.13 removed it).

It is only ever an accelerator: every caller keeps a numpy path that is the reference on 3.13, and
checks any result that must be exact against it.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType


def load() -> ModuleType | None:
    if sys.byteorder != "little":  # its 16-bit sample layout is native-endian; ours is little-endian
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
    except ImportError:
        return None
    return audioop
