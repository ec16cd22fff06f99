"""``lungcad train <model>``: train a stage's model from a config (one loop, any strategy)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from lungcad.config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (unet, ...)", description="Train a stage's model.")
    models = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    u = models.add_parser(
        "unet",
        help="candidate U-Net on LUNA16-layout data",
        description="Train the candidate U-Net on a LUNA16-layout folder (annotations.csv, subset*/...): "
        "the real dataset or 'lungcad synth' output. Writes MODEL_DIR/{model.keras, detector.yaml, history.csv, "
        "training_curve.png, metrics.json, checkpoints/}; --resume continues from the last checkpoint.",
    )
    u.add_argument("--data", required=True, help="LUNA16-layout folder")
    u.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="model directory")
    u.add_argument("--config", default="unet", help="YAML config (default: configs/unet.yaml)")
    u.add_argument("--epochs", type=int, help="override train.epochs")
    u.add_argument("--steps", type=int, help="override train.steps_per_epoch")
    u.add_argument("--cache", help="preprocess cache folder (default: MODEL_DIR/cache)")
    u.add_argument("--workers", type=int, default=1, help="processes for preprocessing the cache")
    u.add_argument("--resume", action="store_true", help="continue from the last checkpoint in MODEL_DIR")
    u.set_defaults(func=run_unet)


def run_unet(args: argparse.Namespace) -> int:
    from lungcad.candidates.train import UNetTrainConfig, train_unet

    config = load_config(UNetTrainConfig, args.config)
    changes = {k: v for k, v in (("epochs", args.epochs), ("steps_per_epoch", args.steps)) if v is not None}
    if changes:
        config = replace(config, train=replace(config.train, **changes))
    result = train_unet(args.data, args.output, config, cache=args.cache, resume=args.resume, workers=args.workers)
    best = ", ".join(f"{k} {v:.4g}" for k, v in result.best.items())
    print(f"train unet: best epoch: {best}; model in {args.output}")
    return 0
