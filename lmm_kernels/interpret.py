"""Whether Triton runs in its CPU interpreter: a module of its own, which the package and the kernel modules import
(the kernel modules never import the package's __init__)."""

import os


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter (TRITON_INTERPRET=1). Triton reads the variable when a kernel is
    defined, so the kernel modules read this once, at import."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")
