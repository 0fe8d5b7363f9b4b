"""Built-in ensembling schemes; importing this package (as `import ensembler` does) registers them all.

Shared helpers (parameter checks, per-member weight vectors) are in :mod:`.common`.
"""
from . import averaging, caruana, optimized, stacking  # noqa: F401
from . import auto  # noqa: F401  (after the others: it tries them)
