"""Scale benchmark for gutsignal: a deterministic data generator and a stage-by-stage runner.

`python -m bench.generate` writes a synthetic project (Cronometer servings exports, CRP lab CSVs
and a `sources.yaml`); `python -m bench.run` measures each pipeline stage on it next to DuckDB's
own `read_csv` of the same files. See bench/README.md.
"""
