"""target-warehouse-seg: a Singer target that upserts streams into DuckDB or PostgreSQL tables."""

import os

# numpy comes in with singer-sdk (through joblib) and does no math here, but its OpenBLAS starts a pool
# of threads when imported, and one of them spun ~0.1 s of CPU at every start (0.3 s of import became
# 0.26 s without it). With one BLAS thread, none is started. A user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
