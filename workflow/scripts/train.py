"""Train the conditional INN on (parton | detector) pairs by maximum likelihood."""

import logging

import tensorflow as tf

from cinnflow.flows import ConditionalINN
from cinnflow.logs import setup_logging
from cinnflow.preparation.prepare import load_arrays
from cinnflow.training import enable_determinism, train

sm = snakemake  # noqa: F821
setup_logging(sm.log[0])
logger = logging.getLogger("cinnflow.scripts.train")
tf.config.threading.set_intra_op_parallelism_threads(sm.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
training = dict(sm.params.training)
# A workflow switch, not a trainer setting: it acts on the whole process.
if training.pop("deterministic", True):
    enable_determinism(sm.params.seed)
else:
    logger.warning("training.deterministic is false: TensorFlow op determinism is off")
if sm.params.get("point"):
    logger.info("grid point %s", sm.params.point)

train_set = load_arrays(sm.input.train)
val_set = load_arrays(sm.input.val)
model = ConditionalINN.from_config(
    dict(sm.params.model),
    parton_kinds=[str(k) for k in train_set["parton_kinds"]],
    detector_kinds=[str(k) for k in train_set["detector_kinds"]],
    seed=sm.params.seed,
    parton_names=[str(n) for n in train_set["parton_names"]],
)
model.adapt(train_set["x_parton"], train_set["c_detector"])
train(
    model,
    (train_set["x_parton"], train_set["c_detector"]),
    (val_set["x_parton"], val_set["c_detector"]),
    cfg=training,
    checkpoint_dir=sm.params.checkpoints,
    seed=sm.params.seed,
    loss_csv=sm.output.loss,
    parton_names=[str(n) for n in train_set["parton_names"]],
)
model.save(sm.output.model)
