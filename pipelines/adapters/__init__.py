"""Source adapters: one module per file format, registered here by name.

An adapter turns one file into canonical rows for its source's target table (see
`pipelines.schema.TARGET_SCHEMAS`) plus rejected rows with the file line, column and reason. It
never touches the warehouse: deduplication across files and writing are the ingest step's job
(`pipelines.ingest`).

To add a format: write `pipelines/adapters/<format>.py` with a `parse(path, source) -> ParseResult`
function and register it in FORMATS below with the kinds it can feed, the table it writes and
whether its files name their own people (`Format`). A CSV format writes its work after reading as
one table transform that also takes a stack of files (`_csv.parse_csv_batch`; see
cronometer_servings): `parse` reads one table and runs it, `parse_batch` runs it once per group of
same-layout files, and registering `batch=parse_batch` makes ingest use it. FHIR JSON does the
same with its own `parse_batch` (fhir.py). NHANES XPT has none: a cycle is a few large files, so
there is no per-file cost to spread. A CSV format also registers the rule its transform gets person
ids by (`person_rule`), so that `person_ids` can tell a file's people from its person column alone.
"""

from collections.abc import Sequence
from pathlib import Path

from pipelines.adapters import (
    bearable,
    cronometer_biometrics,
    cronometer_daily_summary,
    cronometer_servings,
    diet_csv,
    fhir,
    lab_csv,
    myfitnesspal,
    nhanes_xpt,
    oura_trends,
    outcome_csv,
    persons_csv,
    synthea_observations,
)
from pipelines.adapters._csv import person_column_check
from pipelines.adapters._csv.read import column_values
from pipelines.adapters.base import (
    DEFAULT_TARGET,
    AdapterError,
    BatchResult,
    Format,
    ParseResult,
    PersonRule,
)
from pipelines.adapters.diet_csv import person_id
from pipelines.config import SourceConfig


def _csv_parse(path: Path, source: SourceConfig) -> ParseResult:
    """The generic `csv` format reads whatever kind the source says it is."""
    parse = {
        "labs": lab_csv.parse,
        "diet": diet_csv.parse,
        "persons": persons_csv.parse,
        "outcomes": outcome_csv.parse,
    }
    return parse[source.kind](path, source)


def _csv_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """The generic `csv` format's batch reader for the source's kind (see `_csv_parse`)."""
    batch = {
        "labs": lab_csv.parse_batch,
        "diet": diet_csv.parse_batch,
        "persons": persons_csv.parse_batch,
        "outcomes": outcome_csv.parse_batch,
    }
    return batch[source.kind](paths, source)


def _csv_person_rule(source: SourceConfig) -> PersonRule:
    """The person rule of the generic `csv` format's reader for the source's kind (`_csv_parse`):
    lab_csv and persons_csv keep an id as written, diet_csv and outcome_csv drop a ".0"."""
    rules: dict[str, PersonRule] = {
        "labs": person_column_check,
        "diet": person_id,
        "persons": person_column_check,
        "outcomes": person_id,
    }
    return rules[source.kind]


def _csv_target(source: SourceConfig) -> str:
    if source.kind == "diet":
        # A mapped food column means one row per logged food; otherwise rows are totals.
        return "diet_entries" if "food" in source.columns else "diet_daily_reported"
    return DEFAULT_TARGET[source.kind]


def _mfp_target(source: SourceConfig) -> str:
    return "diet_entries" if source.options.get("level") == "entries" else "diet_daily_reported"


def _nhanes_target(source: SourceConfig) -> str:
    return {"diet": "diet_daily_reported"}.get(source.kind, DEFAULT_TARGET[source.kind])


FORMATS: dict[str, Format] = {
    "cronometer_servings": Format(
        ("diet",),
        cronometer_servings.parse,
        batch=cronometer_servings.parse_batch,
        person_rule=lambda s: person_column_check,
    ),
    "cronometer_daily_summary": Format(
        ("diet",),
        cronometer_daily_summary.parse,
        lambda s: "diet_daily_reported",
        batch=cronometer_daily_summary.parse_batch,
        person_rule=lambda s: person_id,
    ),
    "cronometer_biometrics": Format(
        ("diet", "outcomes"),
        cronometer_biometrics.parse,
        lambda s: "biometrics",
        batch=cronometer_biometrics.parse_batch,
        person_rule=lambda s: person_id,
    ),
    "myfitnesspal": Format(
        ("diet",),
        myfitnesspal.parse,
        _mfp_target,
        batch=myfitnesspal.parse_batch,
        person_rule=lambda s: person_id,
    ),
    # One file per export: no batch reader (and its accounting is per reading, not per line).
    "oura_trends": Format(("outcomes",), oura_trends.parse, person_rule=lambda s: person_id),
    "bearable": Format(
        ("outcomes",), bearable.parse, batch=bearable.parse_batch, person_rule=lambda s: person_id
    ),
    "csv": Format(
        ("diet", "labs", "persons", "outcomes"),
        _csv_parse,
        _csv_target,
        batch=_csv_batch,
        person_rule=_csv_person_rule,
    ),
    "fhir": Format(("labs",), fhir.parse, batch=fhir.parse_batch, person_in_file=True),
    "synthea_observations": Format(
        ("labs",),
        synthea_observations.parse,
        batch=synthea_observations.parse_batch,
        person_in_file=True,
    ),
    "nhanes_xpt": Format(
        ("diet", "labs", "persons"), nhanes_xpt.parse, _nhanes_target, person_in_file=True
    ),
}


def person_ids(path: Path, source: SourceConfig) -> frozenset[str] | None:
    """The person ids the rows of `path` (a file of `source`) can have, without parsing it: a
    fixed or folder id without opening the file, else those in its person column, by the rule
    the format's transform uses (rows the parse would reject count too). None when only the
    whole parse can tell. Raises AdapterError for a file the reader refuses."""
    if source.person.fixed is not None:
        return frozenset({source.person.fixed})  # every format takes a fixed id as given
    rule = FORMATS[source.format].person_rule
    if rule is None:
        return None  # NHANES reads SEQN even with from_folder; FHIR and Synthea need the parse
    folder = source.person.for_file(path)
    if folder is not None:
        return frozenset({folder})  # what the rule gives too (`person_column_check`)
    person = rule(source)
    values = column_values(path, source, lambda table: person(table)[0])
    # A row without an id is rejected by the rule's check.
    return frozenset(v for v in values if v is not None)


__all__ = ["FORMATS", "AdapterError", "Format", "ParseResult", "person_ids"]
