"""Generate events with Pythia 8, cluster jets, apply the detector, write ROOT.

``simulate`` runs the whole event chain for one chunk of events and writes one ROOT
file in the Delphes tree schema (see ``cinnflow.io.delphes``); ``merge``
concatenates chunk files. The chain per batch of events is vectorised:
``Pythia.nextBatch`` (awkward arrays) -> Delphes ``Particle`` records
(``cinnflow.events.particles``) -> isolated leptons (``Detector.leptons``) ->
anti-kT jets with FastJet's awkward interface on the visible final state minus
those leptons -> jet smearing, calibration, selection and b tagging
(``Detector.jets``) -> ``DelphesWriter``.

Jets are clustered down to ``JET_CLUSTER_PT_FRACTION * pt_min_gev`` so that the
resolution moves jets across the ``pt_min_gev`` threshold in both directions; the
``pt_min_gev`` and ``eta_max`` cuts apply to the smeared, calibrated jets.

Pythia and FastJet print to file descriptor 1; that text is captured and sent to
this module's logger (DEBUG; Pythia errors at WARNING).
"""

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import awkward as ak
import fastjet
import numpy as np
import pythia8mc

from cinnflow.errors import ConfigError, InputFileError
from cinnflow.events._capture import captured_stdout
from cinnflow.events.detector import Detector
from cinnflow.events.particles import (
    PARTICLE_RECORDS,
    ParticleTable,
    particles_from_batch,
)
from cinnflow.io.delphes import DelphesWriter, read_all_collections
from cinnflow.io.lhe import check_lhe

__all__ = ["merge", "simulate"]

logger = logging.getLogger(__name__)

JET_CLUSTER_PT_FRACTION = 0.5
_JET_KEYS = ("radius", "pt_min_gev", "eta_max")
# Pythia's Random:seed takes 1..900000000 (0 would mean "seed from the clock"), so
# our seed s in [0, _MAX_SEED] becomes Random:seed = s + 1.
_MAX_SEED = 899_999_999
_PARTS = ("generation", "particles", "detector_and_jets", "writing")
#: Jet matching of multi-parton LHE samples: None, or "mlm_madgraph" (Pythia's
#: JetMatchingMadgraph user hook; its JetMatching:* settings come with the process).
MATCHING = (None, "mlm_madgraph")


def _check_jets(jets):
    if not isinstance(jets, Mapping):
        msg = f"jets must be a mapping with keys {_JET_KEYS}, got {jets!r}"
        raise ConfigError(msg)
    missing = [k for k in _JET_KEYS if k not in jets]
    if missing:
        msg = (
            f"jets config lacks keys {missing}; expected keys {_JET_KEYS}, "
            f"got {dict(jets)}"
        )
        raise ConfigError(msg)
    for key in _JET_KEYS:
        value = jets[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            msg = f"jets.{key} is {value!r}; expected a positive number"
            raise ConfigError(msg)


def _pythia_settings(
    *, seed, sqrt_s_gev, isr, fsr, mpi, hadronisation, lhe_file, lhe_skip
):
    on = {True: "on", False: "off"}
    switches = [
        f"PartonLevel:ISR = {on[bool(isr)]}",
        f"PartonLevel:FSR = {on[bool(fsr)]}",
        f"PartonLevel:MPI = {on[bool(mpi)]}",
        f"HadronLevel:all = {on[bool(hadronisation)]}",
        "Random:setSeed = on",
        f"Random:seed = {seed + 1}",
        "Next:numberCount = 0",
        "Next:numberShowEvent = 0",
        "Next:numberShowInfo = 0",
        "Next:numberShowProcess = 0",
    ]
    if lhe_file is None:
        return [f"Beams:eCM = {float(sqrt_s_gev)}", *switches]
    # A vetoed event (jet matching) must not be replaced by the next LHE event, which
    # belongs to the next chunk: abortIfVeto makes Pythia::next() fail instead.
    return [
        "Beams:frameType = 4",
        f"Beams:LHEF = {lhe_file}",
        f"Beams:nSkipLHEFatInit = {int(lhe_skip)}",
        "Check:abortIfVeto = on",
        *switches,
    ]


def _make_pythia(lines, matching=None):
    """Pythia initialised with ``lines``; returns (pythia, hook or None).

    The caller keeps the hook alive for as long as Pythia runs.
    """
    with captured_stdout(logger, "pythia"):
        pythia = pythia8mc.Pythia("", False)
    with captured_stdout(logger, "pythia settings"):
        for line in lines:
            if not pythia.readString(line):
                msg = f"Pythia rejected the setting {line!r}; check its spelling"
                raise ConfigError(msg)
    hook = None
    if matching == "mlm_madgraph":
        hook = pythia8mc.JetMatchingMadgraph()
        pythia.setUserHooksPtr(hook)
    with captured_stdout(logger, "pythia init") as text:
        ok = pythia.init()
    if not ok:
        tail = " | ".join(text[-5:])
        msg = f"Pythia initialisation failed for settings {lines}; last output: {tail}"
        raise ConfigError(msg)
    return pythia, hook


def _cluster(particles, mask, definition, pt_min):
    # Select on the flat arrays and rebuild the lists once: cheaper than masking
    # four jagged arrays.
    flat_mask = ak.to_numpy(ak.flatten(mask))
    per_event = ak.to_numpy(ak.num(mask))
    event = np.repeat(np.arange(len(per_event)), per_event)
    counts = np.bincount(event[flat_mask], minlength=len(per_event))
    columns = {
        name: ak.to_numpy(ak.flatten(particles[field])).astype(np.float64)[flat_mask]
        for name, field in (("px", "Px"), ("py", "Py"), ("pz", "Pz"), ("E", "E"))
    }
    p4 = ak.unflatten(ak.zip(columns), counts)
    with captured_stdout(logger, "fastjet"):
        sequence = fastjet.ClusterSequence(p4, definition)
        return sequence.inclusive_jets(pt_min)


def simulate(
    *,
    output,
    n_events: int,
    seed: int,
    settings: Sequence[str],
    detector_card,
    jets: Mapping[str, float],
    sqrt_s_gev: float = 13000.0,
    isr: bool = False,
    fsr: bool = True,
    mpi: bool = False,
    hadronisation: bool = True,
    lhe_file=None,
    lhe_skip: int = 0,
    matching: str | None = None,
    log_every: int = 10000,
    batch_size: int = 1000,
    particle_record: str = "full",
    first_event_number: int = 0,
) -> dict:
    """Generate, reconstruct and write ``n_events`` events to ``output``.

    Args:
        output: ROOT file to write (atomically), Delphes tree schema.
        n_events: number of events to write. With ``lhe_file``: the number of LHE
            events to shower, ``[lhe_skip, lhe_skip + n_events)`` must lie inside
            the file; events Pythia fails on are dropped (a warning counts them),
            never replaced by later LHE events, so chunks stay disjoint.
        seed: integer in [0, 899999999]; Pythia gets ``Random:seed = seed + 1``
            (Pythia reads 0 as "seed from the clock") and the detector's numpy
            Generator gets ``seed``.
        settings: Pythia setting strings applied after the switches below, e.g.
            ``["WeakDoubleBoson:ffbar2ZW = on", "23:onMode = off", ...]``. With
            ``lhe_file`` they must not switch on internal processes.
        detector_card: path of a detector YAML card, its parsed mapping, or a
            ``Detector``.
        jets: anti-kT parameters: ``radius``, ``pt_min_gev``, ``eta_max``.
        sqrt_s_gev: centre-of-mass energy (ignored with ``lhe_file``: the LHE
            ``<init>`` block sets the beams).
        isr: initial-state radiation (``PartonLevel:ISR``).
        fsr: final-state radiation (``PartonLevel:FSR``).
        mpi: multiparton interactions (``PartonLevel:MPI``).
        hadronisation: ``HadronLevel:all``.
        lhe_file: optional LHE file (plain or gzip) showered instead of the
            internal process (``Beams:frameType = 4``); checked with ``check_lhe``.
        lhe_skip: LHE events skipped before the first one showered
            (``Beams:nSkipLHEFatInit``); chunk k of a run skips the events of
            chunks 0..k-1.
        matching: one of ``MATCHING``. ``"mlm_madgraph"`` vetoes showered events
            that fail MLM matching (Pythia's ``JetMatchingMadgraph`` hook with
            ``JetMatching:merge = on``; the other ``JetMatching:*`` settings come
            from ``settings``); needs ``lhe_file``. Vetoed events are dropped.
        log_every: log progress every this many events.
        batch_size: events per ``nextBatch`` call and per write.
        particle_record: ``"full"`` or ``"hard"`` (see
            ``cinnflow.events.particles.particles_from_batch``).
        first_event_number: ``Event.Number`` of the first event. With
            ``lhe_file``, ``Event.Number`` is ``first_event_number`` plus the
            index of the event within the slice, counting failed and vetoed ones:
            with ``first_event_number = lhe_skip`` (as the workflow sets it) it is
            the 0-based index of the event in the LHE file.

    Returns:
        dict: ``n_events``, ``n_lhe_events_read`` (0 without ``lhe_file``),
        ``seconds``, ``events_per_second``, ``seconds_by_part`` (generation,
        particles, detector_and_jets, writing),
        ``mean_jets``, ``mean_electrons``, ``mean_muons``, ``sigma_gen_mb``.

    Raises:
        ConfigError: bad jets keys, seed, settings or Pythia initialisation, or an
            LHE slice ``[lhe_skip, lhe_skip + n_events)`` beyond the file's events.
        InputFileError: bad LHE file.
    """
    _check_jets(jets)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        msg = f"seed is {seed!r}; expected an integer in [0, {_MAX_SEED}]"
        raise ConfigError(msg)
    if not 0 <= seed <= _MAX_SEED:
        msg = f"seed is {seed!r}; expected an integer in [0, {_MAX_SEED}]"
        raise ConfigError(msg)
    if n_events < 1 or batch_size < 1:
        msg = f"n_events={n_events!r} and batch_size={batch_size!r} must be >= 1"
        raise ConfigError(msg)
    if particle_record not in PARTICLE_RECORDS:
        msg = (
            f"particle_record is {particle_record!r}; "
            f"expected one of {PARTICLE_RECORDS}"
        )
        raise ConfigError(msg)
    if matching not in MATCHING or (matching and lhe_file is None):
        msg = (
            f"matching is {matching!r} with lhe_file {lhe_file!r}; expected one of "
            f"{MATCHING}, and an LHE file for jet matching"
        )
        raise ConfigError(msg)
    if isinstance(settings, str):
        msg = f"settings must be a list of Pythia setting strings, got {settings!r}"
        raise ConfigError(msg)
    detector = Detector.coerce(detector_card)
    if isinstance(lhe_skip, bool) or not isinstance(lhe_skip, (int, np.integer)):
        msg = f"lhe_skip is {lhe_skip!r}; expected a non-negative integer"
        raise ConfigError(msg)
    if lhe_skip < 0 or (lhe_skip and lhe_file is None):
        msg = (
            f"lhe_skip is {lhe_skip!r} with lhe_file {lhe_file!r}; expected an "
            "integer >= 0, and 0 unless an LHE file is showered"
        )
        raise ConfigError(msg)
    if lhe_file is not None:
        lhe_file = Path(lhe_file)
        if any(char.isspace() for char in str(lhe_file)):
            # Pythia reads a word setting up to the first blank, so the file it
            # opened would not be the one checked here.
            msg = (
                f"events.lhe_file {str(lhe_file)!r} contains a blank; Pythia's "
                "Beams:LHEF setting cannot hold one, expected a path without blanks"
            )
            raise ConfigError(msg)
        n_lhe = check_lhe(lhe_file)
        if lhe_skip + n_events > n_lhe:
            msg = (
                f"LHE file {str(lhe_file)!r} holds {n_lhe} events; asked to shower "
                f"events {lhe_skip}..{lhe_skip + n_events - 1} (lhe_skip={lhe_skip}, "
                f"n_events={n_events}); expected lhe_skip + n_events <= {n_lhe} "
                f"(in the workflow: events.n_events <= {n_lhe})"
            )
            raise ConfigError(msg)
    lines = _pythia_settings(
        seed=int(seed),
        sqrt_s_gev=sqrt_s_gev,
        isr=isr,
        fsr=fsr,
        mpi=mpi,
        hadronisation=hadronisation,
        lhe_file=lhe_file,
        lhe_skip=lhe_skip,
    )
    if matching == "mlm_madgraph":
        lines.append("JetMatching:merge = on")
    lines += list(settings)
    logger.info(
        "simulate: %d events, seed %d, output %s, settings %s",
        n_events,
        seed,
        output,
        lines,
    )
    pythia, _hook = _make_pythia(lines, matching)
    table = ParticleTable(pythia.particleData)
    rng = np.random.default_rng(seed)
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, float(jets["radius"]))
    cluster_pt = JET_CLUSTER_PT_FRACTION * float(jets["pt_min_gev"])

    seconds = dict.fromkeys(_PARTS, 0.0)
    totals = {"jets": 0, "electrons": 0, "muons": 0}
    done = 0
    # Events asked of Pythia. With an LHE file each try reads one LHE event, and a
    # failed event is not replaced: the chunk stays inside its slice of the file.
    tried = 0
    next_log = log_every
    start = time.perf_counter()
    with DelphesWriter(output) as writer:
        while done < n_events and tried < n_events:
            tick = time.perf_counter()
            if lhe_file is None:
                want = min(batch_size, n_events - done)
                with captured_stdout(logger, "pythia"):
                    batch = pythia.nextBatch(want, errorMode="skip")
                if len(batch) == 0:
                    break
                numbers = np.arange(done, done + len(batch), dtype=np.int64)
            else:
                # "none" keeps a None for each failed or vetoed event, so every
                # accepted event keeps its index in the LHE file.
                want = min(batch_size, n_events - tried)
                with captured_stdout(logger, "pythia"):
                    batch = pythia.nextBatch(want, errorMode="none")
                accepted = ~ak.to_numpy(ak.is_none(batch, axis=0))
                numbers = lhe_skip + tried + np.flatnonzero(accepted)
                batch = ak.drop_none(batch, axis=0)
                tried += want
                if len(batch) == 0:
                    continue
            tock = time.perf_counter()
            seconds["generation"] += tock - tick

            particles, aux = particles_from_batch(
                batch.prt, table, record=particle_record
            )
            tick = time.perf_counter()
            seconds["particles"] += tick - tock

            with_visible = ak.with_field(particles, aux["Visible"], "Visible")
            electrons, muons, used = detector.leptons(with_visible, rng)
            mask = detector.jet_input_mask(with_visible, used)
            clustered = _cluster(particles, mask, definition, cluster_pt)
            jet_records = detector.jets(
                clustered,
                electrons,
                muons,
                particles,
                rng,
                pt_min_gev=float(jets["pt_min_gev"]),
                eta_max=float(jets["eta_max"]),
            )
            tock = time.perf_counter()
            seconds["detector_and_jets"] += tock - tick

            n_batch = len(batch)
            numbers = numbers.astype(np.int64) + first_event_number - lhe_skip
            event = ak.unflatten(
                ak.zip({"Number": numbers}), np.ones(n_batch, dtype=int)
            )
            writer.write(
                {
                    "Event": event,
                    "Particle": particles,
                    "Electron": electrons,
                    "Muon": muons,
                    "Jet": jet_records,
                }
            )
            seconds["writing"] += time.perf_counter() - tock
            totals["jets"] += int(ak.sum(ak.num(jet_records)))
            totals["electrons"] += int(ak.sum(ak.num(electrons)))
            totals["muons"] += int(ak.sum(ak.num(muons)))
            done += n_batch
            if done >= next_log or done == n_events:
                elapsed = time.perf_counter() - start
                logger.info(
                    "%d/%d events, %.0f events/s", done, n_events, done / elapsed
                )
                next_log += log_every
    if done < n_events and lhe_file is not None:
        logger.warning(
            "%d of the %d LHE events %d..%d of %s failed or were vetoed (matching); "
            "they are dropped",
            n_events - done,
            n_events,
            lhe_skip,
            lhe_skip + n_events - 1,
            lhe_file,
        )
    elif done < n_events:
        logger.warning("Pythia stopped after %d of %d events", done, n_events)
    with captured_stdout(logger, "pythia stat"):
        pythia.stat()
    elapsed = time.perf_counter() - start
    stats = {
        "n_events": done,
        "n_lhe_events_read": tried,
        "seconds": elapsed,
        "events_per_second": done / elapsed if elapsed > 0 else float("nan"),
        "seconds_by_part": seconds,
        "mean_jets": totals["jets"] / max(done, 1),
        "mean_electrons": totals["electrons"] / max(done, 1),
        "mean_muons": totals["muons"] / max(done, 1),
        "sigma_gen_mb": float(pythia.infoPython().sigmaGen()),
    }
    # Pythia and the matching hook print statistics when they are destroyed.
    with captured_stdout(logger, "pythia end"):
        del table, pythia, _hook
    logger.info("simulate done: %s", stats)
    return stats


def merge(inputs: Sequence, output) -> int:
    """Concatenate chunk files written by ``simulate`` into ``output`` (atomic).

    Args:
        inputs: ROOT files in the order their events should appear.
        output: merged ROOT file.

    Returns:
        int: number of events written.

    Raises:
        ConfigError: empty ``inputs``.
        InputFileError: unreadable input, or inputs with different collections.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        msg = f"merge needs at least one input file to write {output}"
        raise ConfigError(msg)
    collections = None
    with DelphesWriter(output) as writer:
        for path in inputs:
            chunk = read_all_collections(path)
            if collections is None:
                collections = sorted(chunk)
            elif sorted(chunk) != collections:
                msg = (
                    f"event file {str(path)!r} holds collections {sorted(chunk)}; "
                    f"expected {collections} as in {str(inputs[0])!r}"
                )
                raise InputFileError(msg)
            writer.write(chunk)
            logger.debug("merged %s", path)
    logger.info(
        "merged %d files, %d events into %s", len(inputs), writer.n_events, output
    )
    return writer.n_events
