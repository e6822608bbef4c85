"""Training machinery shared by train.py and the evaluator: the Trainer loop (training.loop),
process-count-independent batches and keyed randomness (training.data), and the composite
model's three stage jobs (training.stages)."""
from training.data import BatchStream, keyed_seed, row_generators
from training.loop import (CheckpointPlan, DataSpec, Interrupted, StageJob, Trainer, TrainingError,
                           cosine_lr)

__all__ = ["BatchStream", "CheckpointPlan", "DataSpec", "Interrupted", "StageJob", "Trainer",
           "TrainingError", "cosine_lr", "keyed_seed", "row_generators"]
