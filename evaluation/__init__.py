"""Evaluation of the composite text-to-motion model with the HumanML3D protocol (Guo et al. 2022),
against ground truth and against its own parts. `python evaluate.py` is its command line.

- evaluation.items: the test items (features, caption, word/POS tokens, labels) and label fields
- evaluation.evaluators: the in-house matching evaluator and label classifiers, their training
- evaluation.official: the field's own T2M evaluator, its GloVe vectors and statistics
- evaluation.rows: the table's rows and the motions each generates
- evaluation.scoring: one row's metrics (metrics.py holds the maths)
- evaluation.protocol: `evaluate(cfg, plan)`, the whole protocol
- evaluation.report: Markdown / JSON / PNG, filmstrips of real and generated motions
"""
from evaluation.evaluators import load_evaluators, train_evaluator
from evaluation.items import EvalError, load_action_labels, load_labels
from evaluation.protocol import evaluate
from evaluation.report import format_report, write_results
from evaluation.rows import DEFAULT_ROWS, ROW_CHOICES, RowPlan

__all__ = ["DEFAULT_ROWS", "EvalError", "ROW_CHOICES", "RowPlan", "evaluate", "format_report", "load_action_labels", "load_evaluators",
           "load_labels", "train_evaluator", "write_results"]
