"""The warehouse side of the pipeline's steps, without Dagster: the SQL each step runs and the
reads and writes around the pure transforms, analysis and report code. The assets under
`pipelines/defs/` call these; nothing here knows about assets, checks or runs.

Queries longer than a few lines are in `sql/*.sql` next to these modules, read with `sql()`.
"""

from functools import cache
from importlib.resources import files


@cache
def sql(name: str) -> str:
    """The text of `sql/<name>.sql` in this package (shipped with it: see pyproject.toml)."""
    return files(__package__).joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")
