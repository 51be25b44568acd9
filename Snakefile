# cinnflow: pp -> ZW -> (l l)(j j) events, cINN unfolding, calibration and closure.
# This file is the table of contents; the rules live in workflow/rules/.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/events.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/prior.smk"
include: "workflow/rules/injection.smk"


rule all:
    input:
        "results/metrics/calibration.json",
        "results/metrics/closure.json",
        "results/metrics/bars.json",
        "results/metrics/prior.json",
        "results/summary.md",
        "results/provenance.json",
        "results/plots/calibration",
        "results/plots/closure",
        "results/plots/prior",
        "results/plots/training",
        "results/plots/events",
        grid_metrics(),
        injection_targets(),
