"""Shared test settings."""

import os
from pathlib import Path

#: Real public input files (see each file's .source.txt): ../shared/data/real beside
#: the clone, or the folder named by CINNFLOW_REAL_DATA.
REAL_DATA = Path(
    os.environ.get(
        "CINNFLOW_REAL_DATA",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "real",
    )
)

# Config files name each other relative to the repository root, as Snakemake sees
# them; run every test from there, whatever directory pytest was started in.
os.chdir(Path(__file__).resolve().parents[1])
