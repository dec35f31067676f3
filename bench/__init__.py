"""Benchmarks: the kit against the naive code of indoxRouter's guide, its peers and
the raw floor, on real servers.  Run ``python -m bench`` (see bench/README.md)."""
