-- Rejected rows grouped as the dashboards show them (steps/dashboards.py, _rejected_summary).
-- Filled in with str.format: value (the value column), shown (the value cut to the length
-- shown), examples (how many rejects each line of the table lists).
WITH numbered AS (
    SELECT source, reason, "column", path, line, {value},
           row_number() OVER (
               PARTITION BY source, reason, "column" ORDER BY path, line
           ) AS k
    FROM rejected_rows
)
SELECT source, reason, "column", count(*) AS n,
       string_agg(
           path || ' line ' || line || coalesce(': "' || {shown} || '"', ''),
           '; ' ORDER BY k
       ) FILTER (WHERE k <= {examples}) AS examples
FROM numbered
GROUP BY ALL
ORDER BY n DESC, source, reason, "column" NULLS FIRST
