"""Scale benchmark for gutsignal: a deterministic data generator and a stage-by-stage runner.

`python -m bench.generate` writes a synthetic project (Cronometer servings exports, CRP lab CSVs
and a `sources.yaml`); `python -m bench.run` measures each pipeline stage on it next to DuckDB's
own `read_csv` of the same files. See bench/README.md.
"""

# The pipeline's package first: it sets numpy's BLAS threads before the generator loads numpy, so
# the stages run as the app does.
import pipelines  # noqa: F401
