-- Per source and person: the newest file and the latest data day (steps/dashboards.py,
-- _source_freshness). Filled in with str.format: days, a query of (source, person_id,
-- latest_day) rows.
WITH files AS (
    SELECT source, max(modified_at) AS newest_file_at FROM ingest_files GROUP BY source
), days AS (
    SELECT source, person_id, max(latest_day) AS latest_day FROM ({days}) GROUP BY ALL
), dated AS (
    SELECT source FROM days WHERE latest_day IS NOT NULL GROUP BY source
)
SELECT f.source, d.person_id, f.newest_file_at, d.latest_day
FROM files f JOIN days d USING (source) WHERE d.latest_day IS NOT NULL
UNION ALL
SELECT f.source, NULL, f.newest_file_at, NULL FROM files f
WHERE f.source NOT IN (SELECT source FROM dated)
ORDER BY 1, 2
