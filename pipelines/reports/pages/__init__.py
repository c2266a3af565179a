"""The page builders, one module per page: `index`, `person`, `cohort`, and the pieces they share
(`common`). Each takes summaries and normalised inputs and returns the page's HTML; `figures`
draws the charts inside them and `html` gives the escaping and the page shell.
"""
