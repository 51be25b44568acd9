"""Simulate one chunk of events into a Delphes-schema ROOT file."""

from cinnflow.config import load_yaml
from cinnflow.events.generate import simulate
from cinnflow.logs import setup_logging

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
events = sm.params.events
from_lhe = events["source"] == "lhe"
simulate(
    output=sm.output[0],
    n_events=sm.params.n_events,
    seed=sm.params.seed,
    settings=list(sm.params.settings) + list(events.get("extra_settings", [])),
    detector_card=load_yaml(sm.input.card),
    jets=events["jets"],
    sqrt_s_gev=events["sqrt_s_gev"],
    isr=events["isr"],
    fsr=events["fsr"],
    mpi=events["mpi"],
    hadronisation=events["hadronisation"],
    lhe_file=events.get("lhe_file") if from_lhe else None,
    lhe_skip=sm.params.offset if from_lhe else 0,
    matching=sm.params.matching if from_lhe else None,
    first_event_number=sm.params.offset,
    particle_record=events.get("particle_record", "hard"),
)
