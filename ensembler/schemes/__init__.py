"""Built-in ensembling schemes; importing this package registers them all."""
from . import averaging, caruana, optimized, stacking  # noqa: F401
