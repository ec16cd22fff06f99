"""``lungcad train <model>``: train a stage's model from a config (one loop, any strategy)."""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from lungcad.cli.options import add_no_progress, add_workers

log = logging.getLogger(__name__)

#: The datasets a training command's ``--data`` may be: layout folder -> (the file that marks one, the folder of
#: scans inside it). ``lungcad synth OUT`` writes ``OUT/luna16/`` and ``OUT/dsb2017/``.
DATA_LAYOUTS = {"luna16": ("annotations.csv", "."), "dsb2017": ("stage1_labels.csv", "stage1")}


def data_folder(data: str, layouts: Sequence[str] = ("luna16",)) -> str:
    """The folder a training command reads for ``--data``: ``data`` itself when it is one of ``layouts`` (a folder
    with the layout's marker file; a DSB 2017 folder's ``stage1/``), else the one ``<layout>/`` folder in it or one
    level below (a dataset root, such as ``lungcad synth OUT``'s), the first of ``layouts`` found; logged when it
    is not ``data``. Anything else is returned as given (the training reports what is missing).

    Raises:
        DataLayoutError: ``data`` holds several folders of the layout.
    """
    path = Path(data)
    if not path.is_dir():
        return data

    def scans(folder: Path, layout: str) -> Path:
        inner = folder / DATA_LAYOUTS[layout][1]
        return inner if inner.is_dir() else folder

    for layout in layouts:
        if (path / DATA_LAYOUTS[layout][0]).is_file():
            chosen = scans(path, layout)
            break
    else:
        for layout in layouts:
            marker = DATA_LAYOUTS[layout][0]
            found = sorted({p for p in [path / layout, *path.glob(f"*/{layout}")] if (p / marker).is_file()})
            if len(found) > 1:
                from lungcad.errors import DataLayoutError

                raise DataLayoutError(
                    f"{len(found)} {layout}/ datasets in this folder: {', '.join(map(str, found))}",
                    path=path,
                    fix="give one of them with --data",
                )
            if found:
                chosen = scans(found[0], layout)
                break
        else:
            return data
    if chosen != path:
        log.info("--data %s: using %s", data, chosen)
    return str(chosen)


def _model_parser(
    models, name: str, help_text: str, description: str, cache_help: str, default_config: str | None = None
) -> argparse.ArgumentParser:
    """A ``lungcad train <name>`` parser with the options every model shares."""
    p = models.add_parser(name, help=help_text, description=description)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data", help="LUNA16-layout folder (annotations.csv, subset*/), or a dataset root holding one luna16/"
    )
    source.add_argument(
        "--synth",
        metavar="SYNTH_CONFIG",
        help="no data folder: phantoms of this synth config (e.g. synth) are generated as training asks for them, "
        "new ones each epoch (seeded by --synth-seed and the epoch, so --resume continues with the next epoch's)",
    )
    g = p.add_argument_group("on-the-fly synthetic data (--synth)")
    g.add_argument("--synth-seed", type=int, default=0, help="synthetic dataset seed")
    g.add_argument(
        "--synth-size",
        type=int,
        default=512,
        help="phantom matrix (256: about half the generation time, coarser pixels)",
    )
    g.add_argument(
        "--synth-patches",
        type=int,
        default=128 if name == "unet" else 64,
        help="training patches cut from each phantom (default: %(default)s; more: a faster generator, fewer "
        "different phantoms per epoch)",
    )
    g.add_argument(
        "--synth-workers",
        type=int,
        default=2,
        help="generator processes beside the training (0: generate between steps; default 2)",
    )
    g.add_argument("--synth-val", type=int, default=4, help="validation phantoms, made once at the start")
    g.add_argument("--synth-max-slices", type=int, help="cap on slices per phantom (quick runs)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="model directory")
    config = default_config or name
    p.add_argument("--config", default=config, help=f"YAML config (default: configs/{config}.yaml)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--steps", type=int, help="override train.steps_per_epoch")
    p.add_argument("--cache", help=cache_help)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in MODEL_DIR")
    p.add_argument("--init", metavar="INIT_DIR", help=f"start from the weights of this {name} model (fine-tuning)")
    p.add_argument(
        "--strategy",
        choices=["default", "mirrored", "multiworker"],
        default="default",
        help="tf.distribute strategy: one device, all local GPUs (mirrored), or TF_CONFIG workers",
    )
    add_no_progress(p)
    p.add_argument("--gpus", type=int, help="mirrored: use this many GPUs (default: all visible)")
    p.add_argument("--cpu-replicas", type=int, help="mirrored: split the CPU into N logical devices (no GPU needed)")
    p.add_argument(
        "--mixed-precision",
        nargs="?",
        const="float16",
        choices=["float16", "bfloat16"],
        help="compute in float16 (GPUs; the default when given alone) or bfloat16 (CPUs with AMX/AVX512-BF16, recent "
        "GPUs, TPUs: 1.75x faster U-Net training steps than float32 on a 2-core AMX CPU; slower on AVX2-only CPUs); "
        "weights and outputs stay float32",
    )
    return p


def _strategy(args: argparse.Namespace):
    """The distribution strategy the options ask for; must run before TensorFlow builds anything."""
    from lungcad.train.strategy import make_strategy

    strategy = make_strategy(args.strategy, gpus=args.gpus, cpu_replicas=args.cpu_replicas)
    if args.mixed_precision:
        import keras

        keras.mixed_precision.set_global_policy(f"mixed_{args.mixed_precision}")
    return strategy


def _synth_source(args: argparse.Namespace):
    """The :class:`lungcad.train.synthetic.SynthSource` of the ``--synth*`` options (None without ``--synth``, after
    refusing a ``--data`` folder synthesized from LIDC-IDRI test patients)."""
    if not args.synth:
        from lungcad.synth.datasets import check_training_folder

        args.data = data_folder(args.data)
        check_training_folder(args.data)
        return None
    from lungcad.train.synthetic import SynthSource

    return SynthSource(
        config=args.synth,
        seed=args.synth_seed,
        size=args.synth_size,
        patches_per_phantom=args.synth_patches,
        workers=args.synth_workers,
        validation_scans=args.synth_val,
        max_slices=args.synth_max_slices,
    )


def _only_with_data(args: argparse.Namespace, *names: str) -> None:
    """ConfigError when an option that reads the data folder is given with ``--synth``."""
    from lungcad.errors import ConfigError

    for name in names:
        if args.synth and getattr(args, name, None):
            raise ConfigError(f"--{name} reads a data folder's tables: not with --synth")


def _model_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of the options every :func:`_model_parser` command shares (strategy made first)."""
    return {"strategy": _strategy(args), "cache": args.cache, "resume": args.resume, "init": args.init}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (unet, fpr, classifier, risk)", description="Train a stage's model."
    )
    models = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    u = _model_parser(
        models,
        "unet",
        "candidate U-Net on LUNA16-layout data",
        "Train the candidate U-Net on a LUNA16-layout folder (annotations.csv, subset*/...): the real dataset or "
        "'lungcad synth' output. Writes MODEL_DIR/{model.keras, detector.yaml, history.csv, training_curve.png, "
        "metrics.json, checkpoints/}; --resume continues from the last checkpoint.",
        "preprocess cache folder (default: MODEL_DIR/cache)",
    )
    add_workers(u, "processes for preprocessing the cache")
    u.set_defaults(func=run_unet)
    f = _model_parser(
        models,
        "fpr",
        "WideResNet false-positive reduction on candidate patches",
        "Train the WideResNet on a LUNA16-layout folder: its candidates.csv (class 0/1) and/or --candidates (e.g. "
        "the U-Net's, labelled against annotations.csv). Writes MODEL_DIR/{model.keras, fpr.yaml, history.csv, "
        "training_curve.png, metrics.json, checkpoints/}.",
        "patch cache folder (default: MODEL_DIR/patch_cache)",
    )
    f.add_argument("--candidates", help="extra candidate table (seriesuid,coordX,coordY,coordZ,...) to label and use")
    f.add_argument(
        "--unet",
        metavar="UNET_DIR",
        help="--synth: run this U-Net model on each generated phantom; its candidates (labelled by the phantom's truth)"
        " are the hard negatives, and on the validation phantoms the val_cpm and fusion weight's marks",
    )
    f.set_defaults(func=run_fpr)
    c = _model_parser(
        models,
        "classifier",
        "WideResNet nodule classifier (malignancy, shape) on nodule-level labels: a risk feature",
        "Train a nodule classifier for the risk stage on a LUNA16-layout folder: patches of its nodules (--nodules, "
        "default DATA/nodules.csv: id,coordX,coordY,coordZ,diameter_mm,type,...; 'lungcad synth' writes it) labelled "
        "by the config's target column (configs/malignancy.yaml: malignant; configs/shape.yaml: lobulated or "
        "spiculated), plus, if configured, a few class-0 rows of DATA/candidates.csv per scan. Writes "
        "MODEL_DIR/{model.keras, fpr.yaml, history.csv, training_curve.png, metrics.json, checkpoints/}; give it to "
        "'lungcad train risk --classifier NAME=MODEL_DIR'.",
        "patch cache folder (default: MODEL_DIR/patch_cache)",
        default_config="malignancy",
    )
    c.add_argument("--nodules", help="nodule table with the target column (default: DATA/nodules.csv)")
    c.set_defaults(func=run_classifier)
    r = models.add_parser(
        "risk",
        help="per-patient cancer probability (leaky noisy-OR) on labelled patients",
        description="Fit the per-patient cancer model: runs 'lungcad detect --stage fpr' over --data (resumable, into "
        "MODEL_DIR/detections, or reuse --detections), measures the top candidates' features, cross-validates "
        "(log loss and AUC per fold, MODEL_DIR/calibration.png) and writes MODEL_DIR/risk.json.",
    )
    r.add_argument(
        "--data",
        required=True,
        help="scans (DSB layout: one DICOM folder per patient) or a LUNA16 folder, or a dataset root holding one "
        "dsb2017/ (its stage1/ is used) or luna16/",
    )
    r.add_argument("--labels", required=True, help="stage1_labels.csv (id,cancer; id = patient folder or seriesuid)")
    r.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="model directory")
    r.add_argument("--config", default="risk", help="YAML config (default: configs/risk.yaml)")
    r.add_argument("--detections", help="an existing 'lungcad detect --stage fpr' output folder for these scans")
    r.add_argument("--model", help="U-Net model directory for detection (default: the bundled one)")
    r.add_argument("--fpr-model", help="FPR model directory for detection (default: the bundled one)")
    r.add_argument(
        "--classifier",
        action="append",
        metavar="NAME=DIR",
        help="a 'lungcad train classifier' model whose logit is the feature NAME_logit of the config (repeat for "
        "several; configs/risk_classifiers.yaml uses malignancy and shape); copied into MODEL_DIR/classifiers/NAME",
    )
    add_workers(r, "parallel detection processes")
    add_no_progress(r)
    r.set_defaults(func=run_risk)


def _with_overrides(config, args: argparse.Namespace):
    changes = {k: v for k, v in (("epochs", args.epochs), ("steps_per_epoch", args.steps)) if v is not None}
    return replace(config, train=replace(config.train, **changes)) if changes else config


def _report(name: str, result, output: str) -> None:
    best = ", ".join(f"{k} {v:.4g}" for k, v in result.best.items())
    print(f"train {name}: best epoch: {best}; model in {output}")


def _run_model(
    args: argparse.Namespace,
    label: str,
    config_type: type,
    train_data: Callable,
    train_synth: Callable,
    *,
    data_only: tuple[str, ...] = (),
    **extra,
) -> int:
    """Run one :func:`_model_parser` command: refuse ``data_only`` options with ``--synth``, make the synthetic
    source (or check ``--data``) and the strategy, load ``config_type`` from ``--config`` with the
    ``--epochs/--steps`` overrides, then ``train_synth(source, MODEL_DIR, config, **options)`` (no cache) or
    ``train_data(DATA, MODEL_DIR, config, **extra, **options)``; prints the best epoch under ``label`` (a format
    string of ``config``). Returns 0."""
    from lungcad.config import load_config

    _only_with_data(args, *data_only)
    source = _synth_source(args)
    options = _model_options(args)
    config = _with_overrides(load_config(config_type, args.config), args)
    if source is not None:
        options.pop("cache")
        result = train_synth(source, args.output, config, **options)
    else:
        result = train_data(args.data, args.output, config, **extra, **options)
    _report(label.format(config=config), result, args.output)
    return 0


def run_unet(args: argparse.Namespace) -> int:
    from lungcad.train.candidates.synthetic import train_unet_synth
    from lungcad.train.candidates.train import UNetTrainConfig, train_unet

    return _run_model(args, "unet", UNetTrainConfig, train_unet, train_unet_synth, workers=args.workers)


def run_fpr(args: argparse.Namespace) -> int:
    from lungcad.train.fpr.synthetic import train_fpr_synth
    from lungcad.train.fpr.train import FprTrainConfig, train_fpr

    if args.unet and not args.synth:
        from lungcad.errors import ConfigError

        raise ConfigError(
            "--unet runs a U-Net on generated phantoms: give it with --synth (or --candidates with --data)"
        )
    synth = functools.partial(train_fpr_synth, unet=args.unet)
    return _run_model(
        args, "fpr", FprTrainConfig, train_fpr, synth, data_only=("candidates",), candidates=args.candidates
    )


def run_classifier(args: argparse.Namespace) -> int:
    from lungcad.train.risk.classifiers import ClassifierTrainConfig, train_classifier
    from lungcad.train.risk.synthetic import train_classifier_synth

    return _run_model(
        args,
        "classifier ({config.target})",
        ClassifierTrainConfig,
        train_classifier,
        train_classifier_synth,
        data_only=("nodules",),
        nodules=args.nodules,
    )


def run_risk(args: argparse.Namespace) -> int:
    from lungcad.config import load_config
    from lungcad.synth.datasets import check_training_folder
    from lungcad.train.risk.classifiers import parse_classifier_options
    from lungcad.train.risk.train import RiskTrainConfig, train_risk

    args.data = data_folder(args.data, ("dsb2017", "luna16"))
    check_training_folder(args.data)
    config = load_config(RiskTrainConfig, args.config)
    summary = train_risk(
        args.data,
        args.labels,
        args.output,
        config,
        detections=args.detections,
        model_dir=args.model,
        fpr_model_dir=args.fpr_model,
        classifiers=parse_classifier_options(args.classifier),
        workers=args.workers,
    )
    cv = summary["cv"]
    print(
        f"train risk: {summary['patients']} patients ({summary['positives']} with cancer), {cv['folds']}-fold CV: "
        f"log loss {cv['log_loss']:.4f} (base rate {cv['base_rate_log_loss']:.4f}), AUC {_number(cv['auc'])}; "
        f"model in {args.output}"
    )
    for row in cv["per_fold"]:  # a fold without both classes has no AUC
        print(f"  fold {row['fold']}: n {row['n']}, log loss {row['log_loss']:.4f}, AUC {_number(row['auc'])}")
    return 0


def _number(value) -> str:
    """``value`` with 3 decimals, or "n/a" when it is missing (None in JSON) or NaN."""
    return "n/a" if value is None or value != value else f"{value:.3f}"
