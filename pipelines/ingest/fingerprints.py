"""What a stored parse depends on: the parser's code and data, and the source's configuration.

`sync_source` keeps a file's parsed rows only while `source_fingerprint` is the one they were
parsed with; any change to an adapter, the schema, the plausibility rules or the data tables
re-reads every file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from functools import cache
from pathlib import Path

from pipelines.config import SourceConfig
from pipelines.fingerprint import fingerprint


@cache
def parser_fingerprint() -> str:
    """A hash of everything that shapes a parse besides the file and its source's configuration.

    That is every adapter module, subpackages included (formats share helpers such as the `_csv`
    package, so hashing only the registered function's module would miss a fix there), the lab
    mapping code, the schema, the plausibility rules, the core modules they share (text helpers,
    rule engine, lab vocabulary) and the data tables the adapters read (markers.csv, units.csv,
    column tables): editing any of them re-reads every file.
    """
    import pipelines.adapters as adapters_package
    import pipelines.lab_vocabulary as lab_vocabulary_module
    import pipelines.rules as rules_module
    import pipelines.schema as schema_module
    import pipelines.text as text_module
    import pipelines.transforms.labs as labs_module
    import pipelines.transforms.plausibility as plausibility_module

    package = Path(inspect.getfile(adapters_package)).parent
    paths = sorted(package.rglob("*.py"))
    paths += [Path(inspect.getfile(m)) for m in (labs_module, schema_module, plausibility_module)]
    paths += [Path(inspect.getfile(m)) for m in (text_module, rules_module, lab_vocabulary_module)]
    paths += sorted((package.parent / "data").glob("*.csv"))
    return fingerprint(paths)


def source_fingerprint(source: SourceConfig) -> str:
    """The parser fingerprint plus the source's configuration: what a stored parse depends on."""
    # `demo` only changes what the dashboards say about the source's freshness, not how its files
    # parse: turning it on (or upgrading to a version that knows it) must not re-read every file.
    fields = {k: v for k, v in dataclasses.asdict(source).items() if k != "demo"}
    config = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(parser_fingerprint().encode() + b"\0" + config).hexdigest()[:16]
