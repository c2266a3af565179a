"""gutsignal: food diaries and lab results -> warehouse -> dashboards (README.md)."""

import os

# One OpenBLAS thread: the analysis multiplies and inverts many small matrices (a person's ~20
# draws, a cohort's ten covariates), where OpenBLAS' threads cost more in hand-offs than they
# share (a third of the associations step's CPU on 2 cores), and their split of a sum made the
# last bits of a fit depend on the machine's core count. OpenBLAS reads this once, when numpy
# first loads it, so it is set on the package's import, before any of its modules imports
# numpy; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
