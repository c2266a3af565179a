"""Scale benchmark for gutsignal (see bench/README.md)."""
