"""Detector-level sanity plots: m_jj, m_ll, jet multiplicity, jet and lepton pT."""

from cinnflow.logs import setup_logging
from cinnflow.plotting.events import plot_event_sanity

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
plot_event_sanity(list(sm.input), plots_dir=sm.output[0])
