"""The ``optimize-graph`` command line.

::

    optimize-graph IN OUT [--passes LIST] [--verify none|structural|numeric] [--inputs data.npz]
                          [--target NAME] [--json] [--print-ir-after PASS] [--load MODULE_OR_FILE]
                          [--calib-data PATH [--calibrator NAME] | --ranges FILE] [--save-ranges FILE]
                          [--ep-check]
    optimize-graph passes [NAME] [--json]       passes and pipelines, with options
    optimize-graph inspect MODEL [--json]       ops, sizes, opsets, inputs/outputs
    optimize-graph verify A B [--inputs data.npz] [--rtol R] [--atol A] [--json]
    optimize-graph quant-report FP32 QUANT --data PATH [--samples N] [--json]
    optimize-graph ep-check MODEL [--target NAME] [--inputs data.npz] [--json]   where onnxruntime runs each node
    optimize-graph train MODEL OUT --data PATH [--labels NAME] [--loss NAME] [--epochs N] [--lr LR] ...
                                                fine-tune the model's weights in onnxruntime
    optimize-graph demo [--out DIR]             train, export, optimize and check a digits MLP

Reports go to stdout (``--json``: one JSON object and nothing else); logs (``-v``) and errors go to
stderr. A problem with the user's input is one line, ``optimize-graph: error: <what> (<remedy>)``,
without a traceback unless ``--debug``.

Exit codes: 0 success; 1 ``verify`` found the models differ, or ``ep-check`` found nodes off the
target's provider; 2 bad input or usage; 3 a pass failed;
4 verification failed; 70 internal error (a bug: please report it); 130 interrupted.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import logging
import os
import sys
import traceback
import typing
from collections.abc import Iterator, Mapping, Sequence

from onnxsmith import __version__
from onnxsmith.codegen import list_targets
from onnxsmith.errors import OnnxsmithError, PipelineError
from onnxsmith.optimize import DEFAULT_PIPELINE

if typing.TYPE_CHECKING:
    import numpy as np

    from onnxsmith.calibration import Progress
    from onnxsmith.codegen import EpReport

__all__ = ["main"]

PROG = "optimize-graph"
EXIT_NOT_EQUIVALENT = 1
EXIT_OFF_PROVIDER = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

_COMMANDS = ("passes", "inspect", "verify", "quant-report", "ep-check", "train", "demo")

_USAGE = f"""\
{PROG} IN OUT [--passes LIST] [--verify {{none,structural,numeric}}] [--inputs NPZ]
                      [--target NAME] [--json] [--print-ir-after PASS] [--load MODULE_OR_FILE] [-v|-q] [--debug]
                      [--calib-data PATH [--calibrator NAME] | --ranges FILE] [--save-ranges FILE] [--ep-check]
       {PROG} passes [NAME] [--json]
       {PROG} inspect MODEL [--json]
       {PROG} verify A B [--inputs NPZ] [--rtol R] [--atol A] [--json]
       {PROG} quant-report FP32 QUANT --data PATH [--samples N] [--json]
       {PROG} ep-check MODEL [--target NAME] [--inputs NPZ] [--json]
       {PROG} train MODEL OUT --data PATH [--labels NAME] [--loss NAME] [--epochs N] [--lr LR] [--optimizer NAME]
                      [--batch-size N] [--schedule NAME [--warmup N]] [--checkpoint FILE [--resume]] [--eval-data PATH]
                      [--target cpu|cuda]
       {PROG} demo [--out DIR]"""

_EPILOG = f"""\
commands:
  passes [NAME]   list passes and pipelines with their options (or show one in detail)
  inspect MODEL   ops histogram, node count, tensor sizes, opsets, inputs/outputs
  verify A B      check that two models compute the same outputs (onnxruntime)
  quant-report FP32 QUANT
                  per quantized tensor: scales, ranges, clipping, SQNR; worst first with remedies
  ep-check MODEL  where onnxruntime runs each node for a target: nodes per provider, fallbacks, integer kernels
  train MODEL OUT fine-tune the weights on labelled data in onnxruntime and write the trained model
  demo            train a small digits classifier, optimize it with '{DEFAULT_PIPELINE}' and check it

pipelines are comma-separated passes or pipeline names, options in braces:
  {PROG} model.onnx out.onnx --passes 'fold-constants{{max-size=1048576}},cse'

exit codes: 0 ok, 1 models differ (verify) or nodes off the provider (ep-check), 2 bad input or usage, 3 a pass failed,
  4 verification failed, 70 internal error, 130 interrupted"""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code (the console script exits with it)."""
    if argv is None:  # the process's own command line: leave its objects to the OS at exit
        atexit.register(_skip_final_collection)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parse(argv)
    except SystemExit as e:  # argparse printed help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    with _logging(args.verbose, args.quiet, args.debug):
        try:
            return args.run(args)
        except OnnxsmithError as e:
            return _fail(args, str(e), e.exit_code)
        except KeyboardInterrupt:
            return _fail(args, "interrupted; nothing was written", EXIT_INTERRUPTED, label="")
        except BrokenPipeError:  # stdout closed early, e.g. piped into `head`
            _silence_stdout()
            return 0
        except Exception as e:  # the last line of defence: reported as a bug
            message = f"{type(e).__name__}: {e}"
            return _fail(args, f"{message} (rerun with --debug for the traceback, and report it)",
                         EXIT_INTERNAL, label="internal error: ")


def _skip_final_collection() -> None:
    """Spares the exiting interpreter a full collection over everything still alive.

    A command that loaded a large model leaves its nodes and values as cyclic garbage, and the
    collection Python runs at exit would walk all of it (0.8 s after cleaning a 100k-node model)
    only to free memory the OS takes back anyway. Files are closed and written by then; atexit
    handlers registered later (onnxruntime's, tempfile's finalizers) still run before this one.
    """
    gc.freeze()


def _fail(args: argparse.Namespace, message: str, code: int, label: str = "error: ") -> int:
    if args.debug:
        traceback.print_exc()
    one_line = " ".join(message.split())
    print(f"{PROG}: {label}{one_line}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def _logging(verbose: bool, quiet: bool, debug: bool) -> Iterator[None]:
    """Sends onnxsmith's logs to stderr for the duration of one command."""
    logger = logging.getLogger("onnxsmith")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(name)s: %(message)s"))
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _emit(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- argument parsing


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = True, load: bool = False) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO) to stderr")
    group.add_argument("-q", "--quiet", action="store_true", help="print no report, only errors")
    group.add_argument("--debug", action="store_true",
                       help="show tracebacks and run extra checks (e.g. catch a pass lying about 'modified')")
    if json_flag:
        group.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")
    if load:
        parser.add_argument("--load", action="append", default=[], metavar="MODULE_OR_FILE",
                            help="import a module or .py file that registers passes (repeatable)")


class _CalibratorNames:
    """``--calibrator``'s choices, read from the calibration package only when argparse checks a value
    or writes the help (importing it costs a run that does not calibrate 10 ms and 4 MiB, OpenSSL
    included). A ``metavar`` keeps argparse from listing them when the option is declared."""

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    @staticmethod
    def _names() -> list[str]:
        from onnxsmith.calibration import CALIBRATORS

        return sorted(CALIBRATORS)


def _optimize_parser() -> _Parser:
    parser = _Parser(
        prog=PROG, usage=_USAGE, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Optimize an ONNX model with an ordered, verified pipeline of passes.")
    parser.add_argument("input", metavar="IN", help="the .onnx model to read (never modified)")
    parser.add_argument("output", metavar="OUT", help="where to write the optimized model (atomically)")
    parser.add_argument("--passes", default=DEFAULT_PIPELINE, metavar="LIST",
                        help=f"pipeline string (default: {DEFAULT_PIPELINE}); see '{PROG} passes'")
    parser.add_argument("--verify", choices=("none", "structural", "numeric"), default=None,
                        help="check after every changed pass (default: structural; numeric with --inputs)")
    parser.add_argument("--inputs", metavar="NPZ", help="real inputs for numeric verification (.npz by input name)")
    parser.add_argument("--target", choices=list_targets(), default="generic",
                        help="execution target the passes optimize for (default: generic)")
    parser.add_argument("--print-ir-after", action="append", default=[], metavar="PASS",
                        help="print the IR after this pass ('all' for every pass; repeatable or comma-separated)")
    parser.add_argument("--ep-check", action="store_true",
                        help="ask onnxruntime where each node of the output runs on the target's provider "
                             "and add it to the report (see 'ep-check')")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    quant = parser.add_argument_group("quantization (for the qdq pipeline)")
    quant.add_argument("--calib-data", metavar="PATH",
                       help="calibration samples (.npz/.npy file or directory) to compute activation ranges")
    quant.add_argument("--calibrator", choices=_CalibratorNames(), default=None, metavar="NAME",
                       help="how ranges are computed from the samples: %(choices)s (default: minmax); entropy and "
                            "percentile clip rare large values whatever their effect, which costs accuracy on "
                            "transformer models (outlier channels): prefer minmax or mse there, and check with "
                            "quant-report")
    quant.add_argument("--ranges", metavar="FILE", help="use these activation ranges (a ranges.json) instead")
    quant.add_argument("--save-ranges", metavar="FILE", help="write the ranges the pipeline used to a ranges.json")
    _common(parser, load=True)
    parser.set_defaults(run=_run_optimize)
    return parser


def _command_parser(command: str) -> _Parser:
    parser = _Parser(prog=f"{PROG} {command}")
    if command == "passes":
        parser.description = "List passes and pipelines with their options, or show one in detail."
        parser.add_argument("name", nargs="?", help="a pass or pipeline to describe")
        _common(parser, load=True)
        parser.set_defaults(run=_run_passes)
    elif command == "inspect":
        parser.description = "Summarize a model without reading its external weights."
        parser.add_argument("model", metavar="MODEL", help="the .onnx file")
        _common(parser)
        parser.set_defaults(run=_run_inspect)
    elif command == "verify":
        parser.description = "Check that two models compute the same outputs, using onnxruntime."
        parser.add_argument("a", metavar="A", help="the reference model")
        parser.add_argument("b", metavar="B", help="the model to compare with it")
        parser.add_argument("--inputs", metavar="NPZ", help="inputs (.npz by input name); generated if absent")
        parser.add_argument("--rtol", type=float, default=1e-5, help="relative tolerance (default: 1e-5)")
        parser.add_argument("--atol", type=float, default=1e-6, help="absolute tolerance (default: 1e-6)")
        _common(parser)
        parser.set_defaults(run=_run_verify)
    elif command == "quant-report":
        parser.description = ("Measure what quantization did to each tensor: run the fp32 and quantized models "
                              "side by side and list the worst tensors with a suggested remedy.")
        parser.add_argument("fp32", metavar="FP32", help="the float model")
        parser.add_argument("quantized", metavar="QUANT", help="the model quantized from it (QDQ)")
        parser.add_argument("--data", required=True, metavar="PATH",
                            help="samples: an .npz/.npy file or a directory of them, keyed by input name")
        parser.add_argument("--samples", type=int, default=8, metavar="N", help="model runs to measure (default: 8)")
        _common(parser)
        parser.set_defaults(run=_run_quant_report)
    elif command == "ep-check":
        parser.description = ("Load a model in onnxruntime for a target's execution provider, run it once with "
                              "profiling and report where each node ran: nodes per provider, nodes that fell "
                              "back to another provider, integer kernels. Exit code 1 when not all on the provider.")
        parser.add_argument("model", metavar="MODEL", help="the .onnx file")
        parser.add_argument("--target", choices=list_targets(), default="cpu",
                            help="the target whose provider should run every node (default: cpu)")
        parser.add_argument("--inputs", metavar="NPZ", help="inputs for the run (.npz by input name); generated if absent")
        _common(parser)
        parser.set_defaults(run=_run_ep_check)
    elif command == "train":
        _train_arguments(parser)
        _common(parser)
        parser.set_defaults(run=_run_train)
    else:
        parser.description = ("Train a small MLP on the bundled 8x8 digits, export it as ONNX with typical "
                              f"exporter debris, optimize it with '{DEFAULT_PIPELINE}', verify it on held-out "
                              "digits and report.")
        parser.add_argument("--out", metavar="DIR", help="folder for the models (default: a new temporary folder)")
        _common(parser, json_flag=False)
        parser.set_defaults(run=_run_demo)
    return parser


def _train_arguments(parser: _Parser) -> None:
    from onnxsmith.passes.train import LOSSES
    from onnxsmith.train.trainer import PROVIDERS

    parser.description = ("Fine-tune a model's float weights on labelled data: build its training graph\n"
                          "(forward, backward, optimizer step), run it in onnxruntime and write the model with\n"
                          "the trained weights (the input file is never modified).")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"""examples:
  {PROG} train model.onnx tuned.onnx --data train.npz --labels digit --epochs 5 --schedule cosine
  {PROG} train student.onnx tuned.onnx --data distill.npz --labels teacher --loss kl-div --temperature 2
  {PROG} train int8.onnx qat.onnx --data train.npz --qat --weight-bits 4 --lr 3e-4   (int8.onnx from --passes qdq)
  {PROG} train encoder.onnx tuned.onnx --data pairs.npz --labels target --loss cosine --target cuda"""
    parser.add_argument("model", metavar="MODEL", help="the .onnx model to train")
    parser.add_argument("output", metavar="OUT", help="where to write the trained model (atomically)")
    parser.add_argument("--data", required=True, metavar="PATH",
                        help="training rows: an .npz file (or a directory of them) keyed by input name, with labels")
    parser.add_argument("--labels", default="labels", metavar="NAME",
                        help="the array of the data holding the labels or targets (default: labels)")
    parser.add_argument("--loss", choices=LOSSES, default="cross-entropy", help="the loss (default: cross-entropy)")
    parser.add_argument("--output", dest="model_output", default="", metavar="NAME",
                        help="the model output the loss reads (default: the only output)")
    parser.add_argument("--epochs", type=int, default=1, metavar="N", help="passes over the data (default: 1)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="rows per update (default: 32)")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="adamw", help="(default: adamw)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 0.001)")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default: 0)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="SGD L2 penalty or AdamW decoupled decay (default: 0 and 0.01)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="learning-rate schedule (default: constant)")
    parser.add_argument("--warmup", type=int, default=0, metavar="N",
                        help="linear warmup steps before the cosine schedule")
    parser.add_argument("--clip-norm", type=float, default=0.0, metavar="C",
                        help="clip gradients to this global L2 norm (default: off)")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="cross-entropy label smoothing")
    parser.add_argument("--temperature", type=float, default=1.0, metavar="T",
                        help="kl-div (distillation) temperature; the labels array holds the teacher's outputs")
    parser.add_argument("--teacher", choices=("logits", "probs"), default="logits",
                        help="what the kl-div targets hold (default: logits)")
    parser.add_argument("--freeze", default="", metavar="REGEX", help="keep the initializers whose names match constant")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data order (default: 0)")
    parser.add_argument("--checkpoint", metavar="FILE", help="keep a checkpoint (.npz) here, written every epoch")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="N", help="also checkpoint every N steps")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--eval-data", metavar="PATH", help="held-out rows (with labels) evaluated after each epoch")
    parser.add_argument("--target", choices=tuple(PROVIDERS), default="cpu",
                        help="the device to train on: onnxruntime's CPU or CUDA provider (cuda needs onnxruntime-gpu; "
                             "default: cpu)")
    parser.add_argument("--qat", action="store_true",
                        help="quantization-aware training of a QDQ model (from --passes cleanup,qdq): train the "
                             "float weights through the fake quantization, write the QDQ model with folded scales")
    parser.add_argument("--weight-bits", type=int, choices=(4, 8), default=None,
                        help="with --qat: re-quantize the weights to int4 first (needs opset 21)")
    parser.add_argument("--train-scales", action="store_true",
                        help="with --qat: train the quantization scales too (LSQ)")


def _parse(argv: list[str]) -> argparse.Namespace:
    if argv and argv[0] in _COMMANDS:
        parser = _command_parser(argv[0])
        args = parser.parse_args(argv[1:])
        if argv[0] == "train":
            _check_train_arguments(parser, args)
    else:
        parser = _optimize_parser()
        args = parser.parse_args(argv)
        if args.inputs and args.verify in ("none", "structural"):
            parser.error(f"--inputs is used for numeric verification; it cannot go with --verify {args.verify}")
        args.verify = args.verify or ("numeric" if args.inputs else "structural")
        if args.calib_data and args.ranges:
            parser.error("give --calib-data or --ranges, not both")
        if args.calibrator and not args.calib_data:
            parser.error("--calibrator needs --calib-data")
    if args.verbose and args.quiet:
        parser.error("-v and -q cannot be combined")
    return args


def _check_train_arguments(parser: _Parser, args: argparse.Namespace) -> None:
    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint FILE")
    if args.warmup and args.schedule != "cosine":
        parser.error("--warmup goes with --schedule cosine")
    if min(args.epochs, args.batch_size) < 1 or min(args.warmup, args.checkpoint_every) < 0:
        parser.error("--epochs and --batch-size must be >= 1, --warmup and --checkpoint-every >= 0")
    if args.weight_bits and not args.qat:
        parser.error("--weight-bits goes with --qat")
    if args.train_scales and not args.qat:
        parser.error("--train-scales goes with --qat")
    if (args.temperature != 1.0 or args.teacher != "logits") and args.loss != "kl-div":
        parser.error("--temperature and --teacher go with --loss kl-div")
    if os.path.abspath(args.model) == os.path.abspath(args.output):
        parser.error("OUT is the input model; give another path (the input is never modified)")


def _load_plugins(specs: Sequence[str]) -> None:
    from onnxsmith.passes import load_plugin

    for spec in specs:
        load_plugin(spec)


# ---------------------------------------------------------------- commands


def _run_optimize(args: argparse.Namespace) -> int:
    from onnxsmith.optimize import optimize_file
    from onnxsmith.passes import PassManager
    from onnxsmith.report import format_optimize_result, to_json

    _load_plugins(args.load)
    print_ir_after = [name.strip() for item in args.print_ir_after for name in item.split(",") if name.strip()]
    manager = PassManager(args.passes, verify=args.verify, print_ir_after=print_ir_after,
                          ir_stream=sys.stderr if args.json else sys.stdout)
    if not (args.json or args.quiet):
        _emit(f"pipeline: {manager.pipeline}")
    calibration = None
    if args.calib_data:
        from onnxsmith.passes.quant import CalibrationSetup

        progress = None if args.json or args.quiet else _progress_bar
        calibration = CalibrationSetup(args.calib_data, args.calibrator or "minmax", progress)
    result = optimize_file(args.input, args.output, manager, inputs=args.inputs, target=args.target,
                           debug=args.debug, calibration=calibration, ranges=args.ranges,
                           save_ranges=args.save_ranges)
    ep_report = _ep_check(args.output, args.target, manager.inputs) if args.ep_check else None
    if args.json:
        _emit(to_json({**result.to_dict(), "ep_check": ep_report.to_dict() if ep_report else None}))
    elif not args.quiet:
        _emit(format_optimize_result(result))
        if ep_report is not None:
            _emit(ep_report.format())
    return 0


def _ep_check(path: str, target: str, inputs: Mapping[str, np.ndarray] | None) -> EpReport:
    """``ep_check`` of the model saved at ``path`` for ``target``."""
    from onnxsmith.codegen import ep_check, get_target
    from onnxsmith.ir import load

    return ep_check(load(path), get_target(target), inputs)


def _run_ep_check(args: argparse.Namespace) -> int:
    from onnxsmith.input_data import load_input_data
    from onnxsmith.ir import load
    from onnxsmith.report import to_json

    inputs = load_input_data(args.inputs, load(args.model)) if args.inputs else None
    report = _ep_check(args.model, args.target, inputs)
    if args.json:
        _emit(to_json({"model": args.model, **report.to_dict()}))
    elif not args.quiet:
        _emit(report.format())
    return 0 if report.ok else EXIT_OFF_PROVIDER


def _progress_bar(progress: Progress) -> None:
    """Draws the calibration progress on stderr (one line, redrawn; ends with a newline when done)."""
    width = 30
    fraction = progress.fraction
    if fraction is None:
        line = f"calibrating: {progress.runs_done} runs"
    else:
        filled = int(round(fraction * width))
        chunks = f", pass {progress.chunk + 1}/{progress.num_chunks}" if progress.num_chunks > 1 else ""
        line = f"calibrating [{'#' * filled}{'.' * (width - filled)}] {progress.runs_done}/{progress.runs_total}{chunks}"
    done = fraction is not None and fraction >= 1.0
    sys.stderr.write(f"\r{line}" + ("\n" if done else ""))
    sys.stderr.flush()


def _run_passes(args: argparse.Namespace) -> int:
    from onnxsmith.passes import build_pipeline, get_pass, list_passes, list_pipelines, pipeline_string
    from onnxsmith.passes.registry import get_pipeline
    from onnxsmith.report import (
        format_pass_detail,
        format_pass_list,
        format_pipeline_detail,
        pass_to_dict,
        pipeline_to_dict,
        to_json,
    )

    _load_plugins(args.load)
    if args.name:
        pipeline = get_pipeline(args.name)
        if pipeline is not None:
            resolved = build_pipeline(pipeline.spec)
            data = pipeline_to_dict(pipeline, pipeline_string(resolved))
            text = format_pipeline_detail(pipeline, resolved)
        else:
            cls = get_pass(args.name)
            data, text = pass_to_dict(cls), format_pass_detail(cls)
    else:
        passes, pipelines = list_passes(), list_pipelines()
        expansions = {name: pipeline_string(build_pipeline(p.spec)) for name, p in pipelines.items()}
        data = {"passes": [pass_to_dict(cls) for cls in passes.values()],
                "pipelines": [pipeline_to_dict(p, expansions[name]) for name, p in pipelines.items()]}
        text = format_pass_list(passes, pipelines, expansions)
    if args.json:
        _emit(to_json(data))
    elif not args.quiet:
        _emit(text)
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from onnxsmith.ir import load
    from onnxsmith.report import format_summary, to_json
    from onnxsmith.summary import summarize

    summary = summarize(load(args.model), args.model)
    if args.json:
        _emit(to_json(summary.to_dict()))
    elif not args.quiet:
        _emit(format_summary(summary))
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from onnxsmith.report import to_json
    from onnxsmith.verify import check_equivalent

    if args.rtol < 0 or args.atol < 0:
        raise PipelineError("tolerances must be non-negative", f"got --rtol {args.rtol} --atol {args.atol}")
    report = check_equivalent(args.a, args.b, args.inputs, rtol=args.rtol, atol=args.atol)
    if args.json:
        _emit(to_json({"a": args.a, "b": args.b, **report.to_dict()}))
    elif not args.quiet:
        _emit(f"verify: {args.a} (A) vs {args.b} (B)")
        _emit(report.format())
    return 0 if report.ok else EXIT_OFF_PROVIDER


def _run_quant_report(args: argparse.Namespace) -> int:
    from onnxsmith.ir import load
    from onnxsmith.quant_report import format_quant_report, quant_report
    from onnxsmith.report import to_json

    report = quant_report(load(args.fp32), load(args.quantized), args.data, samples=args.samples)
    if args.json:
        _emit(to_json({"fp32": args.fp32, "quantized": args.quantized, **report.to_dict()}))
    elif not args.quiet:
        _emit(format_quant_report(report))
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from onnxsmith.ir import load, save
    from onnxsmith.report import to_json
    from onnxsmith.train import ProgressBar, TrainConfig, qat, train
    from onnxsmith.train.trainer import PROVIDERS

    config = TrainConfig(loss=[args.loss], output=args.model_output, optimizer=args.optimizer, lr=args.lr,
                         epochs=args.epochs, batch_size=args.batch_size,
                         schedule="warmup-cosine" if args.warmup else args.schedule, warmup=args.warmup,
                         weight_decay=args.weight_decay, momentum=args.momentum, clip_norm=args.clip_norm,
                         freeze=args.freeze, label_smoothing=args.label_smoothing, temperature=args.temperature,
                         teacher=args.teacher, quant_scales="lsq" if args.train_scales else "frozen", seed=args.seed,
                         checkpoint_every=args.checkpoint_every)
    progress = None if args.json or args.quiet else ProgressBar(sys.stderr)
    try:
        extra = {"weight_bits": args.weight_bits} if args.qat else {}
        outcome = (qat if args.qat else train)(load(args.model), args.data, config, labels=args.labels,
                                               checkpoint=args.checkpoint, resume=args.resume,
                                               eval_data=args.eval_data, on_step=progress,
                                               provider=PROVIDERS[args.target], **extra)
    finally:
        if progress is not None:
            progress.close()
    save(outcome.model, args.output)
    result = outcome.result
    summary = {"model": args.model, "output": args.output, "steps": result.step, "resumed_from": result.resumed_from,
               "first_loss": result.losses[0] if result.losses else None,
               "last_loss": result.losses[-1] if result.losses else None,
               "evaluations": [{"step": step, **metrics} for step, metrics in result.evaluations]}
    if args.json:
        _emit(to_json(summary))
    elif not args.quiet:
        if result.losses:
            _emit(f"trained {len(result.losses)} steps: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}")
        for step, metrics in result.evaluations:
            _emit(f"step {step}: " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
        _emit(f"wrote {args.output}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from onnxsmith.demo import format_demo, run_demo

    result = run_demo(args.out, progress=None if args.quiet else _emit)
    if not args.quiet:
        _emit(format_demo(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
