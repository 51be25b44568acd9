"""Draw parton-level posterior samples for every test detector event."""

import tensorflow as tf

from cinnflow.flows import ConditionalINN
from cinnflow.logs import setup_logging
from cinnflow.preparation.prepare import load_arrays, save_arrays
from cinnflow.sampling import sample_ensemble
from cinnflow.training import enable_determinism
from cinnflow.training.grid import selected_paths

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
tf.config.threading.set_intra_op_parallelism_threads(sm.threads)
if sm.params.deterministic:
    enable_determinism(sm.params.seed)

test = load_arrays(sm.input.test)
limit = sm.params.sampling.get("max_events")
if limit:
    # Every per-event array (is_injected too, in an injected "data" sample).
    for key in ("x_parton", "c_detector", "event_id", "is_injected"):
        if key in test:
            test[key] = test[key][:limit]
# One model, or an ensemble whose members each give an equal share of the draws.
# With a grid, the seed ensemble of the point with the lowest validation loss.
paths = list(sm.input.models)
if sm.input.grid:
    paths = selected_paths(sm.input.grid[0], paths)
models = [ConditionalINN.load(path) for path in paths]
draws = sample_ensemble(
    models,
    test["c_detector"],
    n_draws=sm.params.sampling["n_draws"],
    batch_size=sm.params.sampling["batch_size"],
    seed=sm.params.seed,
    support_margin=sm.params.sampling.get("support_margin"),
    max_redraws=sm.params.sampling.get("max_redraws", 20),
    balance_quantile=sm.params.sampling.get("balance_quantile"),
)
save_arrays(sm.output[0], draws=draws, **test)
