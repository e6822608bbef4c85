"""Evaluate the composite text-to-motion model with the HumanML3D protocol, against ground truth
and against its own parts.

    python evaluate.py --train_evaluator               # train checkpoints/evaluator.pt on the train split
    python evaluate.py                                 # the metric tables on the test split -> results/
    python evaluate.py --dataset_root dataset/bandai --dataset_kind humanml3d   # on real motion
    python evaluate.py --rows composite guidance --guidance_sweep 1,2,3       # tune the CFG scale
    python evaluate.py --cross_data --dataset_root dataset/bandai --dataset_kind humanml3d --evaluator_file E.pt
                                                       # a model trained on other data (or a mix), on real motion

The metrics come from a text-motion matching evaluator in the style of Guo et al. 2022 trained
here on the training split's ground truth (its text side is independent of the generator's text
encoder), one classifier per label field of labels.json (action; content and style), and, when
`--t2m_evaluator_path` and `--glove_path` name the field's own evaluator and GloVe files, that
evaluator too. Rows: ground truth; composite; AR only (keyframes, linear and cubic interpolation);
diffusion only (no keyframes); the composite at several DDIM step counts; the composite with
real poses pinned in world space; and on request at several guidance scales / DDIM eta values. Every metric is the mean of cfg.eval_repeats runs
with its 95% confidence interval. The package `evaluation/` does the work.
"""
from __future__ import annotations

import sys
from typing import Optional

from config import CompositeConfig, ConfigError, config_from_args, make_parser
from dataset import DataError
from evaluation import (DEFAULT_ROWS, ROW_CHOICES, EvalError, RowPlan, evaluate, format_report,
                        load_action_labels, train_evaluator, write_results)
from evaluation.rows import parse_numbers
from runtime import CheckpointError

__all__ = ["EvalError", "RowPlan", "evaluate", "load_action_labels", "main", "train_evaluator"]


def check_eval_config(cfg: CompositeConfig) -> None:
    for name in ("evaluator_hidden", "evaluator_dim", "evaluator_max_words", "eval_mm_repeats", "eval_mm_num_prompts"):
        if getattr(cfg, name) < 1:
            raise EvalError(f"config field '{name}' must be >= 1, got {getattr(cfg, name)}")
    if cfg.evaluator_temperature <= 0 or cfg.evaluator_lr <= 0:
        raise EvalError("config fields 'evaluator_temperature' and 'evaluator_lr' must be > 0")
    parse_numbers(cfg.eval_ddim_steps, "eval_ddim_steps")


def row_plan(args) -> RowPlan:
    """The rows asked for; a sweep's values add its row group."""
    groups = list(args.rows)
    guidance = parse_numbers(args.guidance_sweep, "guidance_sweep", float) if args.guidance_sweep else ()
    etas = parse_numbers(args.eta_sweep, "eta_sweep", float) if args.eta_sweep else ()
    for group, values in (("guidance", guidance), ("eta", etas)):
        if values and group not in groups:
            groups.append(group)
        if group in groups and not values:
            raise EvalError(f"--rows {group} needs --{group}_sweep values, e.g. --{group}_sweep "
                            f"{'1,2,3' if group == 'guidance' else '0,0.5,1'}")
    return RowPlan(tuple(groups), guidance_scales=guidance, etas=etas)


def make_cli_parser():
    """evaluate.py's options, then every config field."""
    parser = make_parser(__doc__.split("\n\n")[0], prog="evaluate.py")
    parser.add_argument("--train_evaluator", action="store_true",
                        help="train checkpoints/evaluator.pt (and the label classifiers) on the train split, then stop")
    parser.add_argument("--rows", nargs="+", choices=ROW_CHOICES, default=list(DEFAULT_ROWS), metavar="ROW",
                        help=f"row groups to evaluate, of {', '.join(ROW_CHOICES)} (ddim: the composite at each "
                             "of --eval_ddim_steps; pinned: with the test motions' own poses pinned in world "
                             f"space; default: {' '.join(DEFAULT_ROWS)})")
    parser.add_argument("--cross_data", action="store_true",
                        help="score checkpoints trained on other data (another data set, or a mix such as "
                             "dataset/synthetic,dataset/bandai) on this data set's test split, with its evaluator "
                             "(--evaluator_file names one trained elsewhere)")
    parser.add_argument("--guidance_sweep", default="", metavar="G1,G2,...",
                        help="also evaluate the composite at these diffusion guidance scales")
    parser.add_argument("--eta_sweep", default="", metavar="E1,E2,...",
                        help="also evaluate the composite at these DDIM eta values (0: deterministic DDIM)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = make_cli_parser()
    args = parser.parse_args(argv)
    cfg = config_from_args(args, parser)
    try:
        check_eval_config(cfg)
        if args.train_evaluator:
            train_evaluator(cfg)
            return 0
        results = evaluate(cfg, row_plan(args), cross_data=args.cross_data)
        paths = write_results(results, cfg.results_dir)
    except (ValueError, DataError, CheckpointError, ConfigError) as exc:
        print(f"evaluate.py: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    print()
    print(format_report(results))
    print(f"wrote {paths['md']}, {paths['json']}, {paths['png']} (and eval_latest.*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
