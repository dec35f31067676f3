"""The contenders' server apps: one module per family, each serving ``POST /stream``,
``GET /stats`` and ``POST /reset`` over the same fake upstream (:mod:`bench.upstream`)."""
