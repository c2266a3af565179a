"""The page builders, one module per page: `index`, `person`, `cohort`, and the pieces they share
(`common`). Each takes summaries and normalised inputs, prepares the values and renders its
template (pipelines/reports/templates/, through `render`: autoescaped, so text needs no esc() and
only Markup goes in raw); `figures` draws the charts inside them and `html` gives the tables,
cards and the page shell.
"""
