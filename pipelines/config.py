"""sources.yaml: which sources exist and how to read them.

Every problem is reported as a `ConfigError` naming the source entry and the key, because this file
is the user's main interface and a traceback from deep inside an adapter helps nobody.

Core: this module imports no adapter. What it must know of the formats (their names, the kinds
each reads, whether its files name their people) are facts of each adapter's `Format`, handed to
`parse_project_config`; `pipelines.project.load_project_config` hands it the registered ones.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pydantic
import yaml

# The settings block's models have their own module; code that reads sources.yaml imports them
# from here, with the rest of it.
from pipelines.settings import (  # noqa: F401 (re-exported)
    DailyOutcomeSettings,
    ExecutorSettings,
    Settings,
    result_settings,
)

KINDS = ("diet", "labs", "persons", "outcomes")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# `crp_method` of a labs source (pipelines.transforms.labs.CRP_METHODS).
CRP_METHOD_VALUES = ("hs", "standard")

SOURCE_KEYS = {
    "name",
    "kind",
    "format",
    "path",
    "person",
    "columns",
    "date_format",
    "datetime_format",
    "delimiter",
    "decimal",
    "encoding",
    "options",
    "description",
    "crp_method",
    "demo",
}
TOP_KEYS = {"sources", "settings"}


class ConfigError(ValueError):
    """A problem in sources.yaml, with the entry and key it concerns."""


class FormatFacts(Protocol):
    """What checking sources.yaml needs to know of a format (`pipelines.adapters.Format` has it)."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The source kinds the format can feed."""
        ...

    @property
    def person_in_file(self) -> bool:
        """Whether its files carry the person id themselves (then, without a `person` key, the
        ids come from there rather than from the folder name)."""
        ...


@dataclass(frozen=True)
class PersonSpec:
    """How a row gets its person id: a fixed id, a column, or the file's folder name."""

    fixed: str | None = None
    column: str | None = None
    from_folder: bool = False

    def for_file(self, path: Path) -> str | None:
        """The person id every row of `path` belongs to, or None when it comes from a column."""
        if self.fixed is not None:
            return self.fixed
        if self.from_folder:
            return path.parent.name
        return None


@dataclass(frozen=True)
class SourceConfig:
    """One entry of sources.yaml."""

    name: str
    kind: str
    format: str
    path: str
    person: PersonSpec
    columns: dict[str, str] = field(default_factory=dict)
    date_format: str | None = None
    datetime_format: str | None = None
    delimiter: str | None = None
    decimal: str = "."
    encoding: str = "utf-8"
    options: dict[str, Any] = field(default_factory=dict)
    # Labs only: how a CRP test name without a method is read ("hs" or "standard"); None lets the
    # row's evidence decide (pipelines/transforms/labs.py).
    crp_method: str | None = None
    # The bundled demo (or any fixed sample): its data ends on a fixed day, so the dashboards say
    # it is demo data instead of warning, run after run, that it is stale.
    demo: bool = False

    def files(self, raw_dir: Path) -> list[str]:
        """The files under `raw_dir` that match this source's glob, as sorted paths relative to
        it. Strings, not `Path`s: a source can hold tens of thousands of files, and a run keeps
        their list while it ingests them."""
        # The glob's paths start with raw_dir: cutting the prefix off is what relative_to does,
        # at a fraction of its cost per file.
        prefix = os.path.join(str(raw_dir), "")
        found = []
        for path in raw_dir.glob(self.path):
            if path.is_file():
                text = str(path)
                found.append(
                    text[len(prefix) :]
                    if text.startswith(prefix)
                    else path.relative_to(raw_dir).as_posix()
                )
        return sorted(found)


@dataclass(frozen=True)
class ProjectConfig:
    """All of sources.yaml, parsed and checked."""

    sources: tuple[SourceConfig, ...]
    settings: Settings
    path: Path

    def by_kind(self, kind: str) -> list[SourceConfig]:
        return [s for s in self.sources if s.kind == kind]

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"{self.path}: no source named {name!r} (known sources: {known})")


def _person_spec(where: str, value: Any) -> PersonSpec:
    if isinstance(value, str) and value:
        return PersonSpec(fixed=value)
    if isinstance(value, dict):
        unknown = set(value) - {"column", "from_folder"}
        if unknown:
            raise ConfigError(f"{where}, key 'person': unknown key(s) {sorted(unknown)}")
        if value.get("from_folder") is True:
            return PersonSpec(from_folder=True)
        if isinstance(value.get("column"), str):
            return PersonSpec(column=value["column"])
    raise ConfigError(
        f"{where}, key 'person': expected a fixed id (person: alice), "
        "{column: <column name>} or {from_folder: true}"
    )


def _parse_source(index: int, entry: Any, formats: Mapping[str, FormatFacts]) -> SourceConfig:
    where = f"source #{index + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with name, kind, format and path")
    name = entry.get("name")
    if name is not None:
        where = f"source {name!r}"
    unknown = set(entry) - SOURCE_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed keys: {sorted(SOURCE_KEYS)}"
        )
    for key in ("name", "kind", "format", "path"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ConfigError(f"{where}: key {key!r} is required and must be a string")
    if not NAME_RE.match(entry["name"]):
        raise ConfigError(
            f"{where}, key 'name': use lowercase letters, digits and _ (starting with a letter)"
        )
    if entry["kind"] not in KINDS:
        raise ConfigError(f"{where}, key 'kind': {entry['kind']!r} is not one of {list(KINDS)}")
    if entry["format"] not in formats:
        raise ConfigError(
            f"{where}, key 'format': unknown format {entry['format']!r}; "
            f"built-in formats: {sorted(formats)}"
        )
    if Path(entry["path"]).is_absolute() or ".." in Path(entry["path"]).parts:
        raise ConfigError(f"{where}, key 'path': must be a glob relative to data/raw/")
    columns = entry.get("columns") or {}
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        raise ConfigError(f"{where}, key 'columns': expected a mapping of canonical -> file column")
    if "person" in entry:
        person = _person_spec(where, entry["person"])
    elif formats[entry["format"]].person_in_file:
        # Files that name their own patients (FHIR subject, Synthea PATIENT, NHANES SEQN).
        person = PersonSpec()
    else:
        person = PersonSpec(from_folder=True)
    for key in ("date_format", "datetime_format"):
        # Adapters hand these to strptime-style parsers, which fail with a TypeError on a number.
        if entry.get(key) is not None and not (isinstance(entry[key], str) and entry[key]):
            raise ConfigError(
                f'{where}, key {key!r}: expected a format string such as "%d.%m.%Y", '
                f"not {entry[key]!r}"
            )
    delimiter = entry.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ConfigError(f"{where}, key 'delimiter': expected one character such as ',' or ';'")
    decimal = entry.get("decimal", ".")
    if decimal not in (".", ","):
        raise ConfigError(f"{where}, key 'decimal': expected '.' or ','")
    crp_method = entry.get("crp_method")
    if crp_method is not None:
        if entry["kind"] != "labs":
            raise ConfigError(
                f"{where}, key 'crp_method': only a labs source has CRP results; remove the key"
            )
        if crp_method not in CRP_METHOD_VALUES:
            raise ConfigError(
                f"{where}, key 'crp_method': expected 'hs' (high-sensitivity CRP) or 'standard', "
                f"not {crp_method!r}; leave it out to let each file's reference ranges decide"
            )
    encoding = entry.get("encoding", "utf-8")
    try:
        codecs.lookup(encoding if isinstance(encoding, str) else "")
    except LookupError:
        raise ConfigError(
            f"{where}, key 'encoding': {encoding!r} is not a text encoding Python knows; use a "
            "name such as utf-8, utf-8-sig, latin-1 or cp1252"
        ) from None
    options = entry.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ConfigError(
            f"{where}, key 'options': expected a mapping of option names to values, such as "
            f"{{level: entries}}, not {options!r}"
        )
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise ConfigError(
            f"{where}, key 'description': expected text (quote it), not {description!r}"
        )
    demo = entry.get("demo", False)
    if not isinstance(demo, bool):
        # A quoted "true" or a 1 is a slip to point out, not a truthy value to guess at.
        raise ConfigError(f"{where}, key 'demo': expected true or false, not {demo!r}")
    return SourceConfig(
        name=entry["name"],
        kind=entry["kind"],
        format=entry["format"],
        path=entry["path"],
        person=person,
        columns=dict(columns),
        date_format=entry.get("date_format"),
        datetime_format=entry.get("datetime_format"),
        delimiter=delimiter,
        decimal=decimal,
        encoding=encoding,
        options=dict(options),
        crp_method=crp_method,
        demo=demo,
    )


def _parse_settings(path: Path, raw: Any) -> Settings:
    if raw is None:
        return Settings()
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}, key 'settings': expected a mapping")
    allowed = set(Settings.__dataclass_fields__)
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(
            f"{path}, key 'settings': unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    values = dict(raw)
    if values.get("executor") is not None:
        values["executor"] = _block(
            path,
            "executor",
            values["executor"],
            ExecutorSettings,
            '{kind: multiprocess} or {kind: dask, scheduler: "tcp://host:8786"}',
            _check_executor,
        )
    if values.get("daily_outcomes") is not None:
        values["daily_outcomes"] = _block(
            path,
            "daily_outcomes",
            values["daily_outcomes"],
            DailyOutcomeSettings,
            "{lags: [0, 1, 2, 3], min_days: 56}",
        )
    try:
        return Settings(**values)
    except pydantic.ValidationError as exc:
        raise ConfigError("\n".join(_settings_error(path, e) for e in exc.errors())) from None


def _block(
    path: Path,
    key: str,
    raw: Any,
    block: Callable[..., Any],
    example: str,
    check: Callable[[Path, dict[str, Any]], None] | None = None,
) -> Any:
    """A nested settings block (`settings.<key>`) built from YAML's mapping: a strict dataclass
    field takes the dataclass, not a dict. Every error names the key inside the block."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}, key 'settings.{key}': {raw!r} is not a mapping; write e.g. {example}"
        )
    fields = sorted(block.__dataclass_fields__)  # type: ignore[attr-defined]
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(
            f"{path}, key 'settings.{key}': unknown key(s) {sorted(unknown)}; allowed: {fields}"
        )
    if check is not None:
        check(path, raw)
    try:
        return block(**raw)
    except pydantic.ValidationError as exc:
        raise ConfigError(
            "\n".join(_settings_error(path, {**e, "loc": (key, *e["loc"])}) for e in exc.errors())
        ) from None


def _check_executor(path: Path, executor: dict[str, Any]) -> None:
    if executor.get("kind") == "dask" and "scheduler" not in executor:
        raise ConfigError(
            f"{path}, key 'settings.executor.scheduler': missing; kind: dask needs the "
            'address of a running Dask scheduler, e.g. scheduler: "tcp://host:8786"'
        )
    if executor.get("kind", "in_process") != "dask" and "scheduler" in executor:
        raise ConfigError(
            f"{path}, key 'settings.executor.scheduler': only read with kind: dask; remove "
            "it or set kind: dask"
        )


# What each kind of pydantic error means for a value in sources.yaml.
_EXPECTED = {
    "int_type": "is not a whole number",
    "float_type": "is not a number",
    "string_type": "is not a string",
    "bool_type": "is not true or false",
    "tuple_type": "is not a list",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
}


def _settings_error(path: Path, error: Any) -> str:
    """One line naming the key, the value and what is expected, for one pydantic error."""
    name, *item = error["loc"]
    # A key of a nested block (executor.scheduler) joins the name; a list's index does not.
    while item and isinstance(item[0], str):
        name = f"{name}.{item.pop(0)}"
    where = f"{path}, key 'settings.{name}'"
    if item:  # an item of a list (windows)
        where += f", item {item[0] + 1}"
    ctx = error.get("ctx", {})
    if error["type"] == "value_error":  # a check of pipelines.settings (_iana_timezone, ...)
        expected = str(ctx["error"])
    elif error["type"] in _EXPECTED:
        # Bounds of float fields come as 0.0; "at least 0" reads better.
        limits = {k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
        expected = _EXPECTED[error["type"]].format(**limits)
    else:
        expected = f"is not valid ({error['msg']})"
    return f"{where}: {error['input']!r} {expected}"


def parse_project_config(path: Path, formats: Mapping[str, FormatFacts]) -> ProjectConfig:
    """Parse and check sources.yaml at `path`, whose sources may use `formats` (by name)."""
    if not path.exists():
        raise ConfigError(
            f"{path} does not exist. Create it (see README, 'Add your own data source') "
            "or run `gutsignal demo` to set up the bundled demo project."
        )
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'sources' list")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    entries = doc.get("sources") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}, key 'sources': expected a list of source entries")
    sources = tuple(_parse_source(i, e, formats) for i, e in enumerate(entries))
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: source name(s) used twice: {dupes}")
    for s in sources:
        fmt_kinds = formats[s.format].kinds
        if s.kind not in fmt_kinds:
            raise ConfigError(
                f"source {s.name!r}, key 'kind': format {s.format!r} reads {list(fmt_kinds)}, "
                f"not {s.kind!r}"
            )
    return ProjectConfig(
        sources=sources, settings=_parse_settings(path, doc.get("settings")), path=path
    )


def check_source_files(source: SourceConfig, raw_dir: Path) -> list[str]:
    """The source's files (`SourceConfig.files`); a glob that matches nothing is a
    configuration error."""
    files = source.files(raw_dir)
    if not files:
        raise ConfigError(
            f"source {source.name!r}, key 'path': {source.path!r} matches no file under "
            f"{raw_dir}. Put the exports there, or fix the glob (it is relative to data/raw/)."
        )
    return files
