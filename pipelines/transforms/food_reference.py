"""The reference vocabulary: real food names (USDA SR28) with their categories, and the matcher.

`pipelines/data/food_reference.csv.gz` holds the 8,789 descriptions of USDA's Standard Reference
Legacy release 28 (public domain) with their USDA food group and the categories the taxonomy's
written rules (`pipelines/data/taxonomy.csv`, docs/food-categories.md) give them *with that food
group as evidence*. It is generated, never edited by hand:

    python -m pipelines.transforms.food_reference /path/to/usda_sr28

reads `FOOD_DES.txt` and `FD_GROUP.txt` and rewrites the file; a test checks that the committed
file is exactly what the generator writes, so a rule change and the table change together.

A diary name is matched to the reference token-aware and order-insensitive ("Beans, snap, green"
and "green snap beans" are the same words) with rapidfuzz, after `normalise_name` drops the words
that say how a food was cooked or sized and singularises plurals. The score is the mean of
rapidfuzz's token_set_ratio (all of one name's words found in the other) and token_sort_ratio
(the same words overall), so a one-word diary name does not match every long description that
contains the word. At or above `MATCH_THRESHOLD` the reference item's categories are used; below
it the rules apply to the diary name itself. Matching is per distinct name and cached.
"""

from __future__ import annotations

import gzip
import io
import re
import sys
from collections.abc import Iterable
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

REFERENCE_FILE = "food_reference.csv.gz"
# Mean of token_set_ratio and token_sort_ratio on normalised names. At 92 the matches are the
# same food in other words or order ("Beans, snap, green" ~ "green snap beans"); at 90 "White
# Bread" matched "Bread, pita, white" and at 80 one-word names matched longer, different foods.
# On the labelled set (tests/data) scores between 85 and 96 change micro-F1 by < 0.005.
MATCH_THRESHOLD = 92.0

# Words that say how a food was prepared, sized or packed, not what it is. Dropped before
# matching so "Broccoli, boiled, drained, without salt" and "broccoli" are the same name.
_NOISE = frozenset(
    """raw cooked boiled baked broiled roasted steamed grilled fried stewed braised poached
    drained solids liquid liquids fresh salt added and or the of in a an ns nfs
    unprepared prepared regular all types type varieties variety
    trimmed lean only fat separable choice select grade include includes including usda
    commodity enriched unenriched fortified mature seeds g oz lb kg ml cup cups tbsp tsp
    serving large medium small piece pieces slice slices whole""".split()
)
# ...but "whole" matters for grains ("whole wheat", "whole grain"), so it is kept there.
_KEEP_WHOLE = re.compile(r"\bwhole[- ]?(wheat|grain|meal|rye)")


def _singular(token: str) -> str:
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 4 and token.endswith(("oes", "ches", "shes", "sses")):
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


@lru_cache(maxsize=200_000)
def normalise_name(name: str) -> str:
    """Lowercase words of `name` without preparation, size or brand noise, singular, in order."""
    text = name.lower().replace("&", " and ").replace("’", "'")
    text = _KEEP_WHOLE.sub(lambda m: "whole" + m.group(1), text)
    # Sizes and percentages ("80% lean", "2 oz", "1.5 cups") say how much, not what.
    text = re.sub(r"\d+(\.\d+)?\s*%?", " ", text)
    tokens = re.findall(r"[a-z]+", text.replace("'", ""))
    return " ".join(_singular(t) for t in tokens if t not in _NOISE)


@cache
def load_reference() -> pl.DataFrame:
    """The shipped reference table: ndb_no, description, food_group, categories (';'-joined),
    plus `name_norm`, the normalised description the matcher compares."""
    data = resources.files("pipelines.data").joinpath(REFERENCE_FILE).read_bytes()
    table = pl.read_csv(gzip.decompress(data), infer_schema=False)
    return table.with_columns(
        pl.col("categories").fill_null(""),
        pl.col("description")
        .map_elements(normalise_name, return_dtype=pl.String)
        .alias("name_norm"),
    )


@cache
def _reference_choices() -> tuple[list[str], list[str], list[int]]:
    """Distinct normalised reference names, the same with their words sorted (what
    token_sort_ratio compares), and for each the row of its first reference item."""
    names: dict[str, int] = {}
    for i, name in enumerate(load_reference()["name_norm"].to_list()):
        names.setdefault(name, i)
    return list(names), [_sorted_words(n) for n in names], list(names.values())


def _sorted_words(name: str) -> str:
    return " ".join(sorted(name.split()))


def _match_batch(norms: list[str]) -> list[tuple[int, float] | None]:
    """The best reference row and score of each normalised name (None below the threshold).

    The mean score reaches the threshold only if token_sort_ratio reaches 2 * threshold - 100,
    so one vectorised pass of `ratio` on word-sorted names (rapidfuzz's cdist) keeps the few
    candidates worth the second scorer; 3,000 names take about a second instead of a minute.
    """
    choices, sorted_choices, rows = _reference_choices()
    cutoff = 2 * MATCH_THRESHOLD - 100
    out: list[tuple[int, float] | None] = []
    for start in range(0, len(norms), 512):  # bounds the matrix: 512 x 8,789 bytes
        chunk = norms[start : start + 512]
        sort_scores = process.cdist(
            [_sorted_words(n) for n in chunk],
            sorted_choices,
            scorer=fuzz.ratio,
            score_cutoff=cutoff,
            dtype=np.uint8,
        )
        for norm, row_scores in zip(chunk, sort_scores, strict=True):
            best: tuple[int, float] | None = None
            for index in np.flatnonzero(row_scores):
                score = (fuzz.token_set_ratio(norm, choices[index]) + float(row_scores[index])) / 2
                if score >= MATCH_THRESHOLD and (best is None or score > best[1]):
                    best = (rows[index], score)
            out.append(best if norm else None)
    return out


_MATCHES: dict[str, tuple[int, float] | None] = {}


def best_reference_match(name: str) -> tuple[int, float] | None:
    """The reference row that matches `name` best and its score (0-100), or None below
    `MATCH_THRESHOLD`."""
    return _matches([name])[name]


def _matches(names: Iterable[str]) -> dict[str, tuple[int, float] | None]:
    """Best matches of `names`, computed once per distinct name per process (categorisation
    runs per distinct food name, and a nightly run sees mostly the same names)."""
    wanted = list(dict.fromkeys(names))
    new = [n for n in wanted if n not in _MATCHES]
    if new:
        _MATCHES.update(zip(new, _match_batch([normalise_name(n) for n in new]), strict=True))
    return {n: _MATCHES[n] for n in wanted}


def reference_matches(names: Iterable[str]) -> pl.DataFrame:
    """food -> reference row it matched (ndb_no, food_group, categories) and match_score, for
    the names that matched at or above `MATCH_THRESHOLD`."""
    reference = load_reference()
    found = [(n, *m) for n, m in _matches(names).items() if m is not None]
    if not found:
        return pl.DataFrame(
            schema={
                "food": pl.String,
                "ndb_no": pl.String,
                "food_group": pl.String,
                "ref_categories": pl.String,
                "match_score": pl.Float64,
            }
        )
    rows = reference[[r for _, r, _ in found]]
    return pl.DataFrame(
        {
            "food": [n for n, _, _ in found],
            "ndb_no": rows["ndb_no"],
            "food_group": rows["food_group"],
            "ref_categories": rows["categories"],
            "match_score": [round(s, 1) for _, _, s in found],
        }
    )


def read_sr28(folder: Path) -> pl.DataFrame:
    """ndb_no, description, food_group from SR28's `FOOD_DES.txt` and `FD_GROUP.txt` (caret
    separated, text fields between tildes, Latin-1)."""

    def fields(path: Path) -> list[list[str]]:
        lines = path.read_text(encoding="latin-1").splitlines()
        return [[f.strip("~") for f in line.split("^")] for line in lines if line.strip()]

    groups = {f[0]: f[1] for f in fields(folder / "FD_GROUP.txt")}
    foods = fields(folder / "FOOD_DES.txt")
    return pl.DataFrame(
        {
            "ndb_no": [f[0] for f in foods],
            "description": [f[2] for f in foods],
            "food_group": [groups[f[1]] for f in foods],
        }
    )


def build_reference(folder: Path) -> pl.DataFrame:
    """The reference table from the SR28 files in `folder`: each description categorised by the
    taxonomy rules with its USDA food group as the source's category."""
    from pipelines.transforms.food_categories import categorise_by_rules  # imports this module

    sr28 = read_sr28(folder)
    assigned = categorise_by_rules(
        sr28.select(pl.col("description").alias("food"), pl.col("food_group").alias("category_raw"))
    )
    per_food = assigned.group_by("food", "category_raw").agg(
        pl.col("category").sort().str.join(";").alias("categories")
    )
    return (
        sr28.join(
            per_food,
            left_on=["description", "food_group"],
            right_on=["food", "category_raw"],
            how="left",
        )
        .with_columns(pl.col("categories").fill_null(""))
        .sort("ndb_no")
    )


def reference_bytes(table: pl.DataFrame) -> bytes:
    """The committed file's exact bytes: CSV, gzip with no timestamp (so equal tables give
    equal files)."""
    text = io.BytesIO()
    table.write_csv(text, line_terminator="\n")
    return gzip.compress(text.getvalue(), mtime=0)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m pipelines.transforms.food_reference <sr28 folder>")
    out = Path(__file__).resolve().parent.parent / "data" / REFERENCE_FILE
    table = build_reference(Path(argv[0]))
    out.write_bytes(reference_bytes(table))
    print(f"wrote {out} ({table.height} foods)")  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1:])
