"""No pickle, safe YAML, quoted shell words, no network at run time (issue 7)."""

import json
import re
import shlex
import socket
from pathlib import Path

import numpy as np
import pytest

from cinnflow.config import load_process, load_yaml
from cinnflow.dvc_export import derive_stages
from cinnflow.errors import InputFileError
from cinnflow.events.generate import simulate
from cinnflow.io.npz import load_npz
from cinnflow.preparation.prepare import SPLITS, load_arrays, prepare

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [
        *ROOT.glob("src/**/*.py"),
        *ROOT.glob("workflow/**/*.py"),
        *ROOT.glob("workflow/**/*.smk"),
        ROOT / "Snakefile",
    ]
)
FORBIDDEN = {
    "pickle": re.compile(
        r"^\s*(import|from)\s+(c?pickle|dill|joblib|shelve)\b"
        r"|\b(c?pickle|dill|joblib|shelve)\.\w+\("
    ),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "yaml.load without a safe loader": re.compile(
        r"yaml\.(load|load_all)\((?![^)]*SafeLoader)"
    ),
    "eval or exec": re.compile(r"(?<![\w.])(eval|exec)\("),
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "np.load without allow_pickle=False": re.compile(
        r"np\.load\((?![^)]*allow_pickle\s*=\s*False)"
    ),
}


def test_scan_finds_the_sources():
    names = {p.name for p in SOURCES}
    assert {"trainer.py", "prepare.py", "train.py", "common.smk", "Snakefile"} <= names


@pytest.mark.parametrize("rule", list(FORBIDDEN))
def test_no_unsafe_loading_or_execution_in_sources(rule):
    pattern = FORBIDDEN[rule]
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == [], f"{rule}:\n" + "\n".join(hits)


def test_scan_patterns_catch_what_they_should():
    assert not FORBIDDEN["pickle"].search('"""Read npz files (no pickle)."""')
    bad = [
        "import pickle",
        "np.load(path, allow_pickle=True)",
        "yaml.load(stream)",
        "eval(text)",
        "subprocess.run(cmd, shell=True)",
        "np.load(path)",
    ]
    for line, (rule, pattern) in zip(bad, FORBIDDEN.items(), strict=True):
        assert pattern.search(line), rule
    assert not FORBIDDEN["yaml.load without a safe loader"].search(
        "yaml.load(s, Loader=yaml.SafeLoader)"
    )
    assert not FORBIDDEN["eval or exec"].search("model.evaluate(x)")


def test_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x_parton=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputFileError, match="holds a pickled object array") as info:
        load_npz(path, what="posterior file")
    assert f"posterior file {str(path)!r}" in str(info.value)


def test_dvc_commands_quote_paths_with_blanks_and_quotes():
    outs = ["results/it's here.npz", "results/a b/$(touch x).root"]
    jobs = [{"rule": "prepare", "input": ["data/user events.root"], "output": outs}]
    command = derive_stages(jobs)["prepare"]["cmd"]
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "cinnflow.dvc_stage", "prepare"]
    assert words[4:] == sorted(outs)


def test_workflow_rules_run_no_shell_commands():
    """Config values reach jobs only through params of script rules, never a shell."""
    rules = [*ROOT.glob("workflow/rules/*.smk"), ROOT / "Snakefile"]
    hits = [
        f"{path.name}:{n}"
        for path in rules
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s+(shell|run):", line)
    ]
    assert hits == []


@pytest.fixture
def no_network(monkeypatch):
    """Every Python-level attempt to open a connection or resolve a name is recorded
    and refused."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        msg = f"network access attempted: {args[1:]!r}"
        raise OSError(msg)

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_simulate_and_prepare_without_network(no_network, tmp_path):
    process = load_process("config/processes/zw.yaml")
    events = tmp_path / "events.root"
    simulate(
        output=events,
        n_events=60,
        seed=5,
        settings=process["pythia_settings"],
        detector_card=load_yaml("config/detector/atlas.yaml"),
        jets={"radius": 0.6, "pt_min_gev": 25.0, "eta_max": 2.5},
    )
    outputs = {name: tmp_path / f"{name}.npz" for name in SPLITS}
    sizes = prepare(
        [events],
        process,
        fractions={"train": 0.6, "val": 0.2, "test": 0.2},
        seed=1,
        outputs=outputs,
        provenance_path=tmp_path / "provenance.json",
        config={},
    )
    assert no_network == []
    record = json.loads((tmp_path / "provenance.json").read_text())
    assert sum(sizes.values()) == record["n_selected"] >= len(SPLITS)
    train = load_arrays(outputs["train"])
    assert train["x_parton"].shape == (sizes["train"], 12)
    assert np.isfinite(train["c_detector"]).all()
    # The guard itself works: a real connection attempt is refused and recorded.
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("example.org", 80))
    assert len(no_network) == 1
