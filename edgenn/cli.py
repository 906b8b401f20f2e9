"""The `edgenn` command: parse options, call the library, render what it returns. No logic here."""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import click

from edgenn.errors import EXIT_CHECK_FAILED, EXIT_ERROR, CheckFailed, EdgennError, ModelWarning, first_line
from edgenn.report import (
    key_values,
    outputs_json,
    percent,
    render_bench,
    render_compare,
    render_export,
    render_outputs,
    render_quantize,
    render_tune,
    table,
    to_json,
)
from edgenn.runtime.image import DEFAULT_MAX_PIXELS
from edgenn.runtime.model import DEFAULT_MAX_BATCH
from edgenn.runtime.providers import PRECISIONS


class EdgennGroup(click.Group):
    """Turns library errors into one line and a non-zero exit; tracebacks only with --verbose.

    Under --json the error is a JSON object on stdout ({"error": ..., "exit_code": ...}), so that a
    script reading the command's output always gets JSON. Exit codes: 0 done, 1 error, 2 usage,
    3 a check did not pass (edgenn.errors).
    """

    def invoke(self, ctx: click.Context) -> Any:
        from edgenn.fileio import stop_code

        try:
            return self._invoke_reporting(ctx)
        except (Exception, SystemExit) as exc:
            # stopped by SIGTERM: whatever the stop became on its way up (pybind11 turns it into an ImportError
            # during a module's initialisation, a library may wrap that in its own error) is the stop, not a failure
            code = stop_code()
            if code is None or (isinstance(exc, SystemExit) and exc.code == code):
                raise
            raise SystemExit(code) from None

    def _invoke_reporting(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except click.ClickException as exc:
            if _json_mode(ctx):
                _json_error(exc.format_message(), exc.exit_code)
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except EdgennError as exc:
            if _verbose(ctx):
                traceback.print_exc()
            code = EXIT_CHECK_FAILED if isinstance(exc, CheckFailed) else EXIT_ERROR
            if _json_mode(ctx):
                _json_error(str(exc), code)
            raise _Failure(str(exc), code) from None
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in EXTRA_MODULES and not _verbose(ctx):
                message = (
                    f"this command needs {exc.name.split('.')[0]}, which this install lacks: pip install "
                    "'edgenn[full]' (the runtime install runs predict and inspect only)"
                )
                if _json_mode(ctx):
                    _json_error(message, EXIT_ERROR)
                raise click.ClickException(message) from None
            if _verbose(ctx):
                raise
            raise click.ClickException(f"unexpected ModuleNotFoundError: {first_line(exc)}") from None
        except Exception as exc:  # a known cause (a full disk, memory, a path), a bug or an unforeseen failure
            if _verbose(ctx):
                raise
            message = self.known_cause(exc) or (
                f"unexpected {type(exc).__name__}: {first_line(exc)} (run with --verbose for the traceback)"
            )
            if _json_mode(ctx):
                _json_error(message, EXIT_ERROR)
            raise click.ClickException(message) from None

    @classmethod
    def known_cause(cls, exc: BaseException) -> str | None:
        """One line for a failure whose cause is known though no edgenn code named it: memory, an OSError
        that names its path, a full disk or a read-only file system (also as a library's message, such as
        safetensors' "(os error 28)"), in the exception or in what it was raised from."""
        from edgenn.fileio import os_error_in

        seen: list[BaseException] = []
        while exc is not None and len(seen) < 8 and exc not in seen:
            seen.append(exc)
            if isinstance(exc, MemoryError):
                return (
                    f"out of memory ({first_line(exc)}): the batch is too big for this machine; use a smaller "
                    "batch or fewer samples"
                )
            found = exc if isinstance(exc, OSError) else os_error_in(str(exc))
            message = cls.os_error_line(found) if found is not None else None
            if message:
                return message
            exc = exc.__cause__ or exc.__context__
        return None

    @staticmethod
    def os_error_line(exc: OSError) -> str | None:
        from edgenn.fileio import DISK_ERRNOS, FULL_ERRNOS, WRITE_ERRNOS, write_error

        names = [os.fsdecode(n) for n in (exc.filename, exc.filename2) if n is not None]
        if names and exc.errno in DISK_ERRNOS:  # a write, for sure: the free space there helps
            return str(write_error(exc, names[-1]))
        if names:
            fix = "; fix its permissions or choose another path" if exc.errno in WRITE_ERRNOS else ""
            return f"{exc.strerror or first_line(exc)}: {' -> '.join(repr(n) for n in names)}{fix}"
        if exc.errno in FULL_ERRNOS:
            return "no space left on the device; free space, or choose another folder (TMPDIR for temporary files)"
        return None


# What the `full` extra brings; a command that needs one of them says so in one line where it is absent.
EXTRA_MODULES = frozenset({"torch", "onnx", "onnxscript", "sklearn", "safetensors", "tqdm", "onnxconverter_common"})


class _Failure(click.ClickException):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def _json_error(message: str, code: int) -> None:
    click.echo(to_json({"error": message, "exit_code": code}), nl=False)
    sys.exit(code)


def _state(ctx: click.Context) -> dict[str, Any]:
    return ctx.find_root().ensure_object(dict)


def _verbose(ctx: click.Context) -> bool:
    return bool(_state(ctx).get("verbose"))


def _json_mode(ctx: click.Context) -> bool:
    return bool(_state(ctx).get("json"))


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        _state(ctx)["verbose"] = True
        # `edgenn export -v` as `edgenn -v export`: the group silenced warnings before this option was read
        warnings.resetwarnings()
    return value


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        _state(ctx)["json"] = True
    return value


def verbose_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--verbose",
        "-v",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_verbose,
        help="Show library noise and full tracebacks (before or after the command name).",
    )(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,  # read first, so that even a bad option's error comes as JSON
        callback=_set_json,
        help="Print the result (or the error) as JSON on stdout.",
    )(f)


def json_out_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json-out", "json_out", metavar="FILE", help="Also write the JSON here.")(f)


def is_verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and _verbose(ctx))


def examples(*lines: str) -> str:
    """The epilog of a command's --help: real command lines, shown as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _write_json_out(path: str | None, data: Any) -> None:
    if path:
        from edgenn.fileio import write_text_atomic

        write_text_atomic(path, to_json(data))


def _int_list(_ctx: Any, _param: Any, value: str) -> tuple[int, ...]:
    """A comma-separated list of positive whole numbers (batch sizes, thread counts)."""
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of whole numbers, like 1,8,64") from None
    if not items or min(items) < 1:
        raise click.BadParameter(f"{value!r}: give positive whole numbers, like 1,8,64")
    return items


def _input_specs(_ctx: Any, _param: Any, values: tuple[str, ...]) -> tuple[Any, ...]:
    from edgenn.specs import TensorSpec

    try:
        specs = tuple(TensorSpec.parse(v) for v in values)
    except EdgennError as exc:
        raise click.BadParameter(str(exc)) from None
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise click.BadParameter(f"input names must be unique, got {', '.join(names)}")
    return specs


def input_option(help_text: str) -> Callable[..., Any]:
    return click.option(
        "--input",
        "inputs",
        multiple=True,
        callback=_input_specs,
        metavar="NAME:DIMS[:DTYPE]",
        help=help_text + " Dims are separated by x or commas (ids:1,max_len:int64).",
    )


def batch_option(default: str, help_text: str) -> Callable[..., Any]:
    return click.option(
        "--batch", "batches", default=default, show_default=True, callback=_int_list, metavar="LIST", help=help_text
    )


@click.group(cls=EdgennGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgenn")
@verbose_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Export PyTorch models to validated ONNX, quantize, benchmark and run them.

    Exit codes: 0 done, 1 error, 2 bad command line, 3 a check did not pass (validation, a budget).
    """
    ctx.ensure_object(dict)
    if not _verbose(ctx):
        warnings.filterwarnings("ignore")
    # a model that loads but looks damaged is said, once, in one line, with or without --verbose
    warnings.filterwarnings("default", category=ModelWarning)
    warnings.showwarning = _show_warning
    _choose_table_style()


_python_showwarning = warnings.showwarning


def _show_warning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    if issubclass(category, ModelWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, *args, **kwargs)


def _choose_table_style() -> None:
    """Terminal tables (rich) for a person at a terminal; plain text for pipes, files and dumb terminals."""
    from edgenn import report

    stream = click.get_text_stream("stdout")
    terminal = stream.isatty() and os.environ.get("TERM") != "dumb"
    report.terminal_tables(shutil.get_terminal_size().columns if terminal else None)


def main() -> None:
    from edgenn.fileio import remove_on_termination, remove_stale_beside

    # SIGTERM removes this run's temporary files; what killed runs left beside the paths named here goes
    remove_stale_beside(sys.argv[1:])
    with remove_on_termination():
        cli(prog_name="edgenn")


# ----------------------------------------------------------------------------------------- zoo
@cli.command("zoo")
@json_option
def zoo_command(as_json: bool) -> None:
    """List the reference models."""
    from edgenn import zoo

    entries = [zoo.entry(n) for n in zoo.names()]
    if as_json:
        click.echo(
            to_json(
                [
                    {
                        "name": e.name,
                        "inputs": [s.to_dict() for s in e.inputs],
                        "description": e.description,
                        "accuracy_target": e.accuracy_target,
                    }
                    for e in entries
                ]
            )
        )
        return
    click.echo(
        table(
            ["model", "input", "target", "description"],
            [
                (e.name, " ".join(str(s) for s in e.inputs), percent(e.accuracy_target, 0), e.description)
                for e in entries
            ],
        )
    )


# --------------------------------------------------------------------------------------- train
@cli.command("train")
@click.argument("model")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training split (model default).")
@click.option("--optimizer", type=click.Choice(["adamw", "adam", "sgd", "rmsprop"]), help="sgd uses momentum.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--loss", type=click.Choice(["cross_entropy", "mse"]))
@click.option(
    "--init",
    "init",
    type=click.Choice(
        [
            "default",
            "uniform",
            "normal",
            "zeros",
            "ones",
            "constant",
            "kaiming_normal",
            "kaiming_uniform",
            "xavier_normal",
            "xavier_uniform",
        ]
    ),
    help="Weight init for every Linear/Conv/RNN (default: the model's own).",
)
@click.option("--schedule", type=click.Choice(["onecycle", "cosine", "constant"]))
@click.option("--batch", "--batch-size", "batch_size", type=click.IntRange(min=1), help="Training batch size.")
@click.option("--shift", type=click.FloatRange(0, 0.5), help="Random translation augmentation (fraction of size).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Output folder [runs/MODEL].")
@json_option
@verbose_option
def train_command(model: str, out_dir: str | None, as_json: bool, **options: Any) -> None:
    """Train a zoo MODEL on scikit-learn's digits; writes model.safetensors and train.json."""
    from tqdm import tqdm

    from edgenn.train import TrainConfig, train

    if model.endswith(".py") or ".py:" in model:
        raise EdgennError(
            f"edgenn train trains the zoo's reference models on digits, not {model!r}: train your model in your "
            "own code and have its factory load the weights; export, quantize, bench and summary take it as it is"
        )
    cfg = TrainConfig.for_model(model, **options)
    bar = tqdm(total=cfg.epochs, desc=f"train {model}", unit="epoch", file=sys.stderr, disable=as_json or None)

    def on_epoch(stats: Any) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{stats.train_loss:.4f}", val_acc=percent(stats.val_accuracy))

    try:
        result = train(cfg, out_dir or f"runs/{model}", on_epoch=on_epoch)
    finally:
        bar.close()
    if as_json:
        click.echo(to_json(result.to_dict()))
        return
    click.echo(
        key_values(
            [
                ("model", model),
                ("test accuracy", percent(result.test_accuracy)),
                ("val accuracy", f"{percent(result.val_accuracy)} (epoch {result.best_epoch} of {cfg.epochs})"),
                ("training time", f"{result.train_seconds:.1f} s"),
                ("weights", result.weights_path),
                ("record", result.record_path),
            ]
        )
    )


# ------------------------------------------------------------------------------------- summary
@cli.command(
    "summary",
    epilog=examples(
        "edgenn summary lenet5",
        "edgenn summary tests/user_models.py:picture_classifier --input image:1x3x64x64 --batch 8",
    ),
)
@click.argument("model")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--batch-size", "old_batch_size", type=click.IntRange(min=1), hidden=True)
@input_option("The inputs of a file.py:factory that returns no example inputs, e.g. image:1x3x64x64.")
@json_option
@verbose_option
def summary_command(
    model: str, batch_size: int, old_batch_size: int | None, inputs: tuple[Any, ...], as_json: bool
) -> None:
    """Per-layer output shapes and parameter counts of MODEL (a zoo name or file.py:factory)."""
    from edgenn.sources import load_source
    from edgenn.summary import summarize

    loaded = load_source(model, None, inputs)
    batch_size = old_batch_size or batch_size
    sizes = loaded._user_dim_sizes()
    specs = tuple(
        s
        if not any(isinstance(d, str) and d != "batch" for d in s.shape[1:])
        else type(s)(
            s.name, (s.shape[0], *(sizes.get(d, d) if isinstance(d, str) else d for d in s.shape[1:])), s.dtype
        )
        for s in loaded.input_specs
    )
    result = summarize(loaded.module, specs, batch_size, name=loaded.name)
    if as_json:
        click.echo(to_json(result.to_dict()))
        return
    click.echo(
        table(
            ["layer", "type", "output shape", "params"],
            [(r.name, r.kind, "x".join(map(str, r.output_shape)), r.parameters) for r in result.layers],
            title=f"{loaded.name} (batch {batch_size})",
        )
    )
    click.echo(
        key_values(
            [
                ("total params", f"{result.total_parameters:,}"),
                ("trainable params", f"{result.trainable_parameters:,}"),
                ("params size", f"{result.parameter_bytes / 1024:.1f} KiB"),
            ]
        )
    )


# -------------------------------------------------------------------------------------- export
def _session_list(_ctx: Any, _param: Any, value: Any, allow_all: bool = False) -> tuple[str, ...]:
    """Comma-separated (or repeated) PROVIDER[:DEVICE][:PRECISION] entries, checked by name now."""
    from edgenn.runtime.providers import provider_spec
    from edgenn.runtime.session import parse_provider

    values = value if isinstance(value, (tuple, list)) else (value or "",)
    items = tuple(v.strip() for text in values for v in str(text).split(",") if v.strip())
    try:
        for item in items:
            if allow_all and item.lower() == "all":
                continue
            provider = parse_provider(item)[0]
            if provider.lower() != "auto":
                provider_spec(provider)
    except EdgennError as exc:
        raise click.BadParameter(f"{exc}{'; bench also takes all' if allow_all else ''}") from None
    return items


def resolved_auto(items: tuple[str, ...]) -> tuple[str, ...]:
    """`auto` as the provider a Model would pick here (OpenVINO, CUDA, TensorRT where present, else cpu)."""
    from edgenn.runtime.providers import PROVIDERS, resolve_providers

    picked = resolve_providers("auto")[0]
    short = next((name for name, spec in PROVIDERS.items() if spec.ort_name == picked), "cpu")
    return tuple(dict.fromkeys(short if item.lower() == "auto" else item for item in items))


def _one_session(ctx: Any, param: Any, value: str) -> str:
    items = _session_list(ctx, param, value)
    if len(items) != 1:
        raise click.BadParameter(f"give one provider, e.g. auto, cpu or openvino:bf16 (got {value!r})")
    return items[0]


def _bench_providers(ctx: Any, param: Any, value: Any) -> tuple[str, ...]:
    return _session_list(ctx, param, value, allow_all=True)


def _precision_list(_ctx: Any, _param: Any, value: str) -> tuple[str, ...]:
    from edgenn.runtime.providers import check_precision

    try:
        items = tuple(check_precision(v) for v in value.split(",") if v.strip())
    except EdgennError as exc:
        raise click.BadParameter(str(exc)) from None
    if not items:
        raise click.BadParameter("give one or more of f32, bf16, f16")
    return items


def _dims(_ctx: Any, _param: Any, values: tuple[str, ...]) -> tuple[tuple[str, int, int | None], ...]:
    """--dim NAME=SIZE[,SIZE2]: the export size of a named dynamic dim and the second size parity checks."""
    out = []
    for text in values:
        name, _, sizes = text.partition("=")
        try:
            numbers = [int(v) for v in sizes.split(",")]
        except ValueError:
            numbers = []
        if not name.strip() or len(numbers) not in (1, 2) or min(numbers, default=0) < 1:
            raise click.BadParameter(f"{text!r}: write NAME=SIZE or NAME=SIZE,SIZE2 with positive sizes, like H=64,128")
        out.append((name.strip(), numbers[0], numbers[1] if len(numbers) == 2 else None))
    return tuple(out)


def _preprocess(_ctx: Any, _param: Any, value: str | None) -> Any:
    if value is None:
        return None
    from edgenn.specs import Preprocessing

    try:
        return Preprocessing.parse(value)
    except EdgennError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command(
    "export",
    epilog=examples(
        "edgenn export lenet5 --weights models/lenet5/model.safetensors -o lenet5.onnx",
        "edgenn export tests/user_models.py:unet --input image:1x3xHxW --dim H=64,96 --dim W=64,96 -o unet.onnx",
        "edgenn export tests/user_models.py:two_inputs --output logits --output score -o two.onnx --json",
    ),
)
@click.argument("source")
@click.option("-o", "--out", "output", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights from `edgenn train` (zoo models).")
@click.option("--random-weights", is_flag=True, help="Zoo models: export untrained weights (refused otherwise).")
@input_option("An input, e.g. x:1x3x224x224:float32 or ids:1x16:int64 (repeat for several; default: forward's).")
@click.option(
    "--output",
    "output_names",
    multiple=True,
    metavar="NAME",
    help="Name the outputs in order (repeat) [dict keys, named-tuple fields, else output, output_0, ...].",
)
@click.option(
    "--dim",
    "dims",
    multiple=True,
    callback=_dims,
    metavar="NAME=SIZE[,SIZE2]",
    help="Size of a named dynamic dim at export, and the second size parity checks [8, then 2n-1].",
)
@click.option(
    "--preprocess",
    callback=_preprocess,
    metavar="SPEC",
    help="How a picture becomes the input, stored in the model: size=224x224,mean=0.485,0.456,0.406,"
    "std=0.229,0.224,0.225,layout=NCHW,color=rgb.",
)
@click.option("--static", is_flag=True, help="Pin the batch dimension instead of making it dynamic.")
@click.option("--opset", type=click.IntRange(7, 30), help="ONNX opset (default: the exporter's).")
@click.option(
    "--exporter",
    type=click.Choice(["auto", "dynamo", "torchscript"]),
    default="auto",
    show_default=True,
    help="auto: dynamo first, TorchScript if it fails.",
)
@click.option(
    "--allow-trace-warnings",
    is_flag=True,
    help="Keep a TorchScript export whose tracing froze values computed from the inputs (refused otherwise).",
)
@click.option("--softmax/--no-softmax", "softmax", default=None, help="Zoo models: end in a softmax (probabilities).")
@batch_option("1,7,64", "Parity batch sizes.")
@click.option("--batches", "old_batches", callback=lambda c, p, v: _int_list(c, p, v) if v else None, hidden=True)
@click.option("--atol", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-3, show_default=True)
@click.option(
    "--validate-on",
    "validate_on",
    multiple=True,
    callback=_session_list,
    metavar="PROVIDER[:PRECISION]",
    help="Check parity on these providers too, e.g. openvino or openvino:bf16 (comma list or repeat).",
)
@click.option("--keep-invalid", is_flag=True, help="Keep the file even when validation fails.")
@json_out_option
@click.option("--report", "old_report", type=click.Path(dir_okay=False), hidden=True)
@json_option
@verbose_option
def export_command(
    source: str,
    output: str,
    weights: str | None,
    random_weights: bool,
    inputs: tuple[Any, ...],
    output_names: tuple[str, ...],
    dims: tuple[tuple[str, int, int | None], ...],
    preprocess: Any,
    static: bool,
    opset: int | None,
    exporter: str,
    allow_trace_warnings: bool,
    softmax: bool | None,
    batches: tuple[int, ...],
    old_batches: tuple[int, ...] | None,
    atol: float,
    rtol: float,
    validate_on: tuple[str, ...],
    keep_invalid: bool,
    json_out: str | None,
    old_report: str | None,
    as_json: bool,
) -> None:
    """Export SOURCE (a zoo name, file.py:factory or module:attr) to a validated ONNX file."""
    from edgenn.export import ExportOptions, export_source
    from edgenn.parity import Tolerance

    json_out = json_out or old_report
    options = ExportOptions(
        opset=opset,
        dynamic_batch=not static,
        exporter=exporter,
        parity_batches=old_batches or batches,
        tolerance=Tolerance(atol, rtol),
        keep_invalid=keep_invalid,
        verbose=is_verbose(),
        validate_on=validate_on,
        output_names=output_names,
        dims=dims,
        allow_trace_warnings=allow_trace_warnings,
    )
    if json_out:
        from edgenn.fileio import check_file_target, refuse_same_file

        check_file_target(json_out, "--json-out")
        refuse_same_file(output, ("--json-out file", json_out))
    on_step = None if as_json else (lambda text: click.echo(f"  {text}...", err=True))
    result = export_source(
        source,
        output,
        weights,
        options,
        inputs,
        softmax,
        on_step=on_step,
        random_weights=random_weights,
        preprocessing=preprocess,
    )
    _write_json_out(json_out, result.to_dict())
    click.echo(to_json(result.to_dict()) if as_json else render_export(result))
    result.raise_for_failure()


# ------------------------------------------------------------------------------------- predict
@cli.command(
    "predict",
    epilog=examples(
        "edgenn predict models/lenet5/model.onnx digit.png --top-k 3",
        "edgenn predict two.onnx inputs.npz --json        # .npz: one array per input name",
        "edgenn predict unet.onnx picture.png --raw       # raw outputs of any model",
    ),
)
@click.argument("model_path", metavar="MODEL")
@click.argument("input_path", metavar="INPUT")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Classes to show.")
@click.option("--raw", is_flag=True, help="Print the raw outputs instead of classes (the default for non-classifiers).")
@click.option(
    "--provider",
    default="auto",
    show_default=True,
    callback=_one_session,
    help="auto (TensorRT, CUDA, OpenVINO, then CPU), cpu, openvino[:DEVICE], cuda, tensorrt.",
)
@click.option(
    "--precision",
    type=click.Choice(list(PRECISIONS)),
    help="What the provider computes in (bf16/f16 where the device has them) [f32, or the one --provider names].",
)
@click.option("--fallback", is_flag=True, help="Let the CPU provider run what the provider cannot (and say so).")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads (default: its own).")
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BATCH,
    show_default=True,
    help="Larger batches run in chunks of this many samples (bounded memory, the same outputs).",
)
@click.option(
    "--memory",
    type=click.Choice(["arena", "lean"]),
    help="onnxruntime's CPU arena (fast, keeps memory; the default) or none (lean: memory goes back after "
    "the call) [a deployment's recorded setting, else arena].",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    help="A picture with more pixels is refused before it is decoded.",
)
@click.option(
    "--ignore-metadata",
    is_flag=True,
    help="Run the file as a plain ONNX model: no edgenn metadata (labels, preprocessing, the digest) is read.",
)
@json_option
@verbose_option
def predict_command(
    model_path: str,
    input_path: str,
    top_k: int,
    raw: bool,
    provider: str,
    precision: str | None,
    fallback: bool,
    threads: int | None,
    max_batch: int,
    memory: str | None,
    max_pixels: int,
    ignore_metadata: bool,
    as_json: bool,
) -> None:
    """Run MODEL (.onnx, or a deployment folder) on INPUT: a picture, a .npy, or a .npz with one array per
    input. Classifiers print their top classes; other models (or --raw) their outputs."""
    from pathlib import Path

    from edgenn.runtime import Model, classify_file
    from edgenn.runtime.files import looks_like_scores, read_inputs

    bounds = {"max_batch": max_batch, "memory": memory}
    if Path(model_path).is_dir() and (provider, precision, fallback, ignore_metadata) == ("auto", None, False, False):
        model = Model(model_path, threads=threads, check_finite=True, **bounds)
    else:
        model = Model(
            model_path,
            providers=provider,
            threads=threads,
            check_finite=True,
            precision=precision,
            fallback=fallback,
            metadata="ignore" if ignore_metadata else "strict",
            **bounds,
        )
    about = {"model": model.path, "providers": list(model.providers), "session": model.session_info.to_dict()}
    if raw or not looks_like_scores(model) or Path(input_path).suffix.lower() == ".npz" and len(model.inputs) > 1:
        read_as, feeds = read_inputs(model, input_path)
        outputs = model.predict(feeds)
        if as_json:
            click.echo(to_json({**about, "source": input_path, "read_as": read_as, "outputs": outputs_json(outputs)}))
            return
        title = f"{input_path} (read as {read_as}) with {model.path} on {model.session_info.summary}"
        click.echo(render_outputs(outputs, title))
        return
    if Path(input_path).suffix.lower() == ".npz":
        read_as, feeds = read_inputs(model, input_path)
        from edgenn.runtime.files import FileClassification

        result = FileClassification(input_path, read_as, tuple(model.classify(feeds, top_k)))
    else:
        result = classify_file(model, input_path, top_k, max_pixels)
    if as_json:
        click.echo(to_json({**about, **result.to_dict()}))
        return
    if model.session_info.note:
        click.echo(f"note: {model.session_info.note}", err=True)
    batch = len(result.predictions) > 1
    rows = [
        ((s,) if batch else ()) + (rank, c.label, c.index, percent(c.score))
        for s, classes in enumerate(result.predictions)
        for rank, c in enumerate(classes, 1)
    ]
    headers = (["sample"] if batch else []) + ["rank", "label", "index", "probability"]
    title = f"{input_path} (read as {result.read_as}) with {model.path} on {model.session_info.summary}"
    click.echo(table(headers, rows, title=title))


# ------------------------------------------------------------------------------------- compare
@cli.command(
    "compare",
    epilog=examples(
        "edgenn compare lenet5 models/lenet5/model.onnx --weights models/lenet5/model.safetensors --layerwise",
        "edgenn compare models/resnet/model.onnx models/resnet/model.quant.onnx@cpu --layerwise --plot layers.png",
        "edgenn compare model.onnx@cpu model.onnx@openvino:bf16 --data inputs.npz --json",
    ),
)
@click.argument("reference", metavar="A")
@click.argument("candidate", metavar="B")
@click.option("--weights", type=click.Path(dir_okay=False), help="Trained weights for a zoo side (safetensors).")
@click.option("--random-weights", is_flag=True, help="Let a zoo side run untrained (no --weights).")
@click.option(
    "--data", type=click.Path(dir_okay=False), help="Inputs as .npz, one array per input [digits, else random]."
)
@input_option("Random inputs of this shape (NAME:DIMS[:DTYPE]); repeat per input.")
@click.option("--batch", type=click.IntRange(min=1), default=7, show_default=True, help="Samples both sides run on.")
@click.option(
    "--provider", default="auto", show_default=True, callback=_one_session, help="For .onnx sides that name none."
)
@click.option(
    "--atol",
    type=click.FloatRange(min=0),
    help="Per-output tolerance, elementwise with --rtol [1e-4 and 1e-3 for float32 on both sides; else the "
    "error relative to each output's range, within --tolerance's default].",
)
@click.option("--rtol", type=click.FloatRange(min=0), help="Per-output tolerance (see --atol).")
@click.option("--layerwise", is_flag=True, help="Compare every layer, matched by module path or tensor name.")
@click.option(
    "--tolerance",
    "layer_tolerance",
    type=click.FloatRange(min=0),
    help="A layer departs past this error relative to its range [1e-3 float, 0.03 bf16/f16, 0.1 int8].",
)
@click.option("--chunk", type=click.IntRange(min=1), default=64, show_default=True, help="Tensors read per run.")
@click.option("--no-local", is_flag=True, help="Skip the local figures (each layer on the reference's inputs).")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Plot error by layer (with --layerwise; matplotlib).")
@json_option
@json_out_option
@verbose_option
def compare_command(
    reference: str,
    candidate: str,
    weights: str | None,
    random_weights: bool,
    data: str | None,
    inputs: tuple[Any, ...],
    batch: int,
    provider: str,
    atol: float | None,
    rtol: float | None,
    layerwise: bool,
    layer_tolerance: float | None,
    chunk: int,
    no_local: bool,
    plot_path: str | None,
    as_json: bool,
    json_out: str | None,
) -> None:
    """Run A (the reference) and B on the same inputs and compare their outputs, and with --layerwise every
    layer. A side is a model source run eagerly (a zoo name with --weights, file.py:factory) or
    MODEL.onnx[@PROVIDER[:DEVICE][:PRECISION]]. Exit 3 when an output or a layer is beyond tolerance."""
    from edgenn.compare import CompareOptions, compare
    from edgenn.parity import Tolerance

    if plot_path:
        from edgenn.bench import check_output_path, require_matplotlib

        if not layerwise:
            raise click.UsageError("--plot draws the layer-by-layer errors: add --layerwise")
        if not plot_path.lower().endswith(".png"):
            raise click.UsageError(f"--plot writes a PNG: name it FILE.png, not {plot_path!r}")
        check_output_path(plot_path, "--plot")
        require_matplotlib()
    if json_out:
        from edgenn.bench import check_output_path

        check_output_path(json_out, "--json-out")
    options = CompareOptions(
        batch=batch,
        tolerance=None if atol is None and rtol is None else Tolerance(1e-4 if atol is None else atol, rtol or 0.0),
        layerwise=layerwise,
        layer_tolerance=layer_tolerance,
        chunk=chunk,
        local=not no_local,
        provider=provider,
        data=data,
        input_specs=inputs,
        weights=weights,
        random_weights=random_weights,
    )
    on_step = None if as_json else (lambda text: click.echo(f"  {text}...", err=True))
    report = compare(reference, candidate, options, on_step=on_step)
    if plot_path and report.layerwise is not None:
        from edgenn.compare import write_layer_plot

        write_layer_plot(report.layerwise, plot_path)
    _write_json_out(json_out, report.to_dict())
    click.echo(to_json(report.to_dict()) if as_json else render_compare(report))
    if not report.passed:
        outside = [o for o in report.outputs if not o.passed]
        parts = []
        if outside:
            worst = max(outside, key=lambda o: o.error.max_abs_error)
            parts.append(f"output {worst.name!r} fails {report.criterion} (max abs {worst.error.max_abs_error:.3g})")
        if report.layerwise is not None:
            parts.append(report.layerwise.departure_line())
        what = "; ".join(parts)
        if as_json:  # the report says so ("passed": false); one JSON document on stdout
            sys.exit(EXIT_CHECK_FAILED)
        raise CheckFailed(f"{report.candidate} departs from {report.reference}: {what}")


# ------------------------------------------------------------------------------------- inspect
@cli.command(
    "inspect",
    epilog=examples(
        "edgenn inspect models/lenet5/model.onnx",
        "edgenn inspect unet.onnx --json",
        "edgenn inspect big.onnx --no-load   # read the file only, open no session",
    ),
)
@click.argument("model_path", metavar="MODEL")
@click.option("--load/--no-load", "load_check", default=True, show_default=True, help="Try a session per provider.")
@json_option
@verbose_option
def inspect_command(model_path: str, load_check: bool, as_json: bool) -> None:
    """What MODEL (.onnx) holds: inputs and outputs with their dims, opsets, producer, edgenn metadata, ops,
    parameters, external data, and whether each provider present loads it."""
    from edgenn.inspect_model import inspect_model

    found = inspect_model(model_path, load_check=load_check)
    if as_json:
        click.echo(to_json(found.to_dict()))
        return
    shown_meta = {k: v for k, v in found.metadata.items() if k not in ("edgenn.validation", "edgenn.library_versions")}
    pairs = [
        ("file", f"{found.path} ({found.file_bytes / 1024:.1f} KiB)"),
        ("producer", found.producer or "-"),
        ("ir version", found.ir_version),
        ("opsets", ", ".join(f"{d} {v}" for d, v in found.opsets.items())),
        ("inputs", ", ".join(str(s) for s in found.inputs)),
        ("outputs", ", ".join(str(s) for s in found.outputs)),
        ("nodes", f"{found.nodes}: " + ", ".join(f"{op} {n}" for op, n in found.op_counts)),
        ("parameters", f"{found.parameters:,} ({found.parameter_bytes / 1024:.1f} KiB)"),
        ("external data", ", ".join(found.external_data) or "none (one self-contained file)"),
        ("integrity", found.integrity),
    ]
    pairs += [(key, value if isinstance(value, str) else json.dumps(value)) for key, value in shown_meta.items()]
    pairs += [(f"loads on {p.provider}", ("yes: " if p.loads else "NO: ") + p.detail) for p in found.providers]
    click.echo(key_values(pairs))


# ----------------------------------------------------------------------------------- providers
@cli.command("providers")
@json_option
@verbose_option
def providers_command(as_json: bool) -> None:
    """List the execution providers edgenn knows, and the devices and precisions each offers here."""
    from edgenn.runtime.providers import survey

    found = survey()
    if as_json:
        click.echo(to_json([p.to_dict() for p in found]))
        return
    rows = []
    for status in found:
        if status.reason:
            rows.append((status.spec.name, status.spec.ort_name, "-", "-", f"not here: {status.reason}"))
        for device in status.devices:
            rows.append(
                (status.spec.name, status.spec.ort_name, device.name, " ".join(device.precisions), device.description)
            )
    click.echo(table(["provider", "onnxruntime name", "device", "precisions", "hardware"], rows))


# ------------------------------------------------------------------------------------ quantize
def _recipe_list(_ctx: Any, _param: Any, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from edgenn.quantize import AUTO_RECIPES

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in AUTO_RECIPES]
    if unknown or not names:
        given = ", ".join(unknown) or "(none)"
        raise click.BadParameter(f"unknown recipe {given}; choose from {', '.join(AUTO_RECIPES)}")
    return names


@cli.command(
    "quantize",
    epilog=examples(
        "edgenn quantize models/lenet5/model.onnx -o lenet5.int8.onnx --mode auto",
        "edgenn quantize text.onnx -o text.int8.onnx --mode dynamic --input ids:1x32:int64",
        "edgenn quantize unet.onnx -o unet.int8.onnx --mode auto --calibration pictures.npz --max-output-error 0.02",
    ),
)
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "output", required=True, type=click.Path(dir_okay=False), help="The .onnx to write.")
@click.option(
    "--mode",
    type=click.Choice(["static", "dynamic", "fp16", "auto"]),
    default="static",
    show_default=True,
    help="auto: try the recipes, keep the fastest within --max-accuracy-drop.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["qdq", "qoperator"]),
    default="qdq",
    show_default=True,
    help="Static int8 format.",
)
@click.option("--per-channel/--no-per-channel", default=True, show_default=True, help="One weight scale per channel.")
@click.option(
    "--method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="minmax",
    show_default=True,
    help="Static calibration method.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False),
    help="Calibration inputs (.npz, one array per model input) [digits training split].",
)
@click.option("--samples", type=click.IntRange(min=1), default=256, show_default=True, help="Calibration samples.")
@click.option(
    "--eval-data",
    type=click.Path(dir_okay=False),
    help="Labelled evaluation data (.npz: the inputs and `labels`) [digits test split].",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=0.5,
    show_default=True,
    metavar="POINTS",
    help="Accuracy budget in percentage points: auto mode's target, a check for the others.",
)
@click.option(
    "--max-output-error",
    type=float,
    default=0.01,
    show_default=True,
    help="The budget where the data has no labels: max |quantized - fp32| over max |fp32|.",
)
@input_option("Sizes of dynamic dims for random data (no --eval-data, not a zoo model), e.g. ids:1x32:int64.")
@click.option("--exclude", multiple=True, metavar="NODE", help="Keep this node in float (repeat for several).")
@click.option("--quantize-output-layer", is_flag=True, help="Static: quantize the last Gemm/MatMul too.")
@click.option(
    "--min-conv-channels",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Convs with fewer input channels stay float (int8 is slower there); 0 quantizes all.",
)
@click.option(
    "--recipes",
    callback=_recipe_list,
    metavar="LIST",
    help="Auto: the recipes to try, comma-separated [static-qdq,static-qdq-per-tensor,static-qoperator,dynamic,fp16].",
)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Threads for the timings.")
@click.option(
    "--provider",
    "--providers",
    "providers",
    default="auto",
    show_default=True,
    callback=_session_list,
    metavar="LIST",
    help="Measure both models on these providers, side by side, e.g. cpu,openvino,openvino:bf16 "
    "(the first is where auto mode chooses; auto: the one Model picks).",
)
@json_out_option
@json_option
@verbose_option
def quantize_command(
    model_path: str,
    output: str,
    mode: str,
    fmt: str,
    per_channel: bool,
    method: str,
    calibration: str | None,
    samples: int,
    eval_data: str | None,
    max_accuracy_drop: float,
    max_output_error: float,
    inputs: tuple[Any, ...],
    exclude: tuple[str, ...],
    quantize_output_layer: bool,
    min_conv_channels: int,
    recipes: tuple[str, ...] | None,
    threads: int,
    providers: tuple[str, ...],
    json_out: str | None,
    as_json: bool,
) -> None:
    """Quantize MODEL (.onnx) and measure what it cost against the fp32 model on held-out data.

    Accuracy where the data has labels (the zoo's digits, or --eval-data with `labels`); otherwise
    output error, SQNR and cosine similarity. dynamic and fp16 need no data: random inputs time them."""
    from tqdm import tqdm

    from edgenn.evaluate import LatencyOptions
    from edgenn.quantize import QuantizeOptions, quantize

    options = QuantizeOptions(
        mode=mode,
        format=fmt,
        per_channel=per_channel,
        method=method,
        samples=samples,
        calibration=calibration,
        eval_data=eval_data,
        max_accuracy_drop=max_accuracy_drop,
        max_output_error=max_output_error,
        inputs=inputs,
        exclude=exclude,
        keep_output_layer_float=not quantize_output_layer,
        min_conv_channels=min_conv_channels,
        latency=LatencyOptions(threads=threads),
        providers=resolved_auto(providers),
        verbose=is_verbose(),
        **({"auto_recipes": recipes} if recipes else {}),
    )
    bar = tqdm(desc="quantize", bar_format="{desc} [{elapsed}]", file=sys.stderr, disable=as_json or None)
    try:
        result = quantize(model_path, output, options, on_step=bar.set_description_str)
    finally:
        bar.close()
    _write_json_out(json_out, result.to_dict())
    click.echo(to_json(result.to_dict()) if as_json else render_quantize(result))
    if not result.budget_met:
        e = result.evaluation
        if e.drop_points is not None:
            what = f"accuracy budget of {result.max_accuracy_drop:g} points not met (drop {e.drop_points:.2f} points"
        else:
            what = f"output error budget of {max_output_error:g} not met (error {e.output_error:.3g}"
        raise CheckFailed(f"{what} on the {e.data}); the best model found was written to {result.output}")


# ---------------------------------------------------------------------------------------- tune
def _tune_recipes(_ctx: Any, _param: Any, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from edgenn import recipes

    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in recipes.names()]
    if unknown or not names:
        given = ", ".join(unknown) or "(none)"
        raise click.BadParameter(f"unknown recipe {given}; choose from {', '.join(recipes.names())}, or none")
    return names


@cli.command("tune")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "output", required=True, type=click.Path(file_okay=False), help="The deployment folder.")
@click.option(
    "--batch", "batches", default="1,64", show_default=True, callback=_int_list, help="Batch sizes to tune for."
)
@click.option(
    "--threads", callback=lambda c, p, v: _int_list(c, p, v) if v else (), help="Thread counts [all cores,1]."
)
@click.option(
    "--provider",
    "--providers",
    "providers",
    default="auto",
    show_default=True,
    callback=_bench_providers,
    metavar="LIST",
    help="Providers to try, e.g. cpu,openvino (auto or all: every one present; the CPU provider is always measured).",
)
@click.option("--max-accuracy-drop", type=float, default=0.5, show_default=True, metavar="POINTS", help="Budget.")
@click.option(
    "--max-output-error",
    type=float,
    default=0.01,
    show_default=True,
    help="Budget where --eval-data has no labels: max |out - fp32| over max |fp32|.",
)
@click.option(
    "--time-budget", type=float, default=90.0, show_default=True, metavar="SECONDS", help="For the whole tune."
)
@click.option(
    "--recipes",
    callback=_tune_recipes,
    metavar="LIST",
    help="Quantization recipes to try, comma-separated, or none [every registered recipe].",
)
@click.option(
    "--calibration", type=click.Path(dir_okay=False), help="Calibration inputs (.npz) [digits training split]."
)
@click.option("--samples", type=click.IntRange(min=1), default=256, show_default=True, help="Calibration samples.")
@click.option(
    "--eval-data",
    type=click.Path(dir_okay=False),
    help="Data to choose on (.npz; with `labels` for accuracy), split in halves: one chooses, one reports "
    "[digits validation and test splits].",
)
@click.option("--force", is_flag=True, help="Replace the output folder if it exists.")
@json_option
@verbose_option
def tune_command(
    model_path: str,
    output: str,
    batches: tuple[int, ...],
    threads: tuple[int, ...],
    providers: tuple[str, ...],
    max_accuracy_drop: float,
    max_output_error: float,
    time_budget: float,
    recipes: tuple[str, ...] | None,
    calibration: str | None,
    samples: int,
    eval_data: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Find the fastest deployment of MODEL (.onnx) on this machine within an accuracy budget; write it to a folder
    that `edgenn.runtime.Model(FOLDER)` applies."""
    from tqdm import tqdm

    from edgenn.tune import TuneOptions, tune

    options = TuneOptions(
        batches=batches,
        threads=threads,
        providers=tuple("all" if p.lower() == "auto" else p for p in providers) or ("all",),
        max_accuracy_drop=max_accuracy_drop,
        max_output_error=max_output_error,
        time_budget=time_budget,
        calibration=calibration,
        samples=samples,
        eval_data=eval_data,
        force=force,
        verbose=is_verbose(),
        **({"recipes": recipes} if recipes is not None else {}),
    )
    bar = tqdm(desc="tune", bar_format="{desc} [{elapsed}]", file=sys.stderr, disable=as_json or None)
    try:
        result = tune(model_path, output, options, on_step=bar.set_description_str)
    finally:
        bar.close()
    click.echo(to_json(result.to_dict()) if as_json else render_tune(result))
    if not result.budget_met:
        raise CheckFailed(
            f"no candidate held the accuracy budget beside the fp32 file; {result.folder} deploys fp32 "
            "(raise --max-accuracy-drop to allow more)"
        )


# ------------------------------------------------------------------------------------- package
@cli.command(
    "package",
    epilog=examples(
        "edgenn package models/lenet5/model.onnx -o lenet5-pkg                       # bundle: model, manifest, golden",
        "edgenn package models/resnet/model.quant.onnx --format ort -o resnet-ort --ort-style runtime",
        "edgenn package models/simple_cnn/deploy --format triton -o repo --max-batch-size 64 --instances 2",
        "edgenn package two.onnx --format bundle -o two-pkg --data inputs.npz --force",
    ),
)
@click.argument("source", metavar="MODEL.onnx|DEPLOY_DIR")
@click.option("-o", "--out", "output", required=True, type=click.Path(), help="The package folder to write.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["bundle", "ort", "triton"]),
    default="bundle",
    show_default=True,
    help="bundle: the model as it is; ort: onnxruntime's ORT format and its operators; triton: a model repository.",
)
@click.option(
    "--ort-style",
    type=click.Choice(["fixed", "runtime"]),
    help="ORT: fixed bakes in this CPU's optimisations; runtime saves them to replay on the target [fixed].",
)
@click.option("--type-reduction", is_flag=True, default=None, help="ORT: list each operator's types too.")
@click.option("--name", help="Triton: the model's name [the model's folder name, or the file's].")
@click.option(
    "--max-batch-size",
    type=click.IntRange(min=0),
    help="Triton: the largest batch; 0 serves the model's own shapes without batching [64].",
)
@click.option("--instances", type=click.IntRange(min=1), help="Triton: model instances [1].")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Intra-op threads per session [a deployment's; Triton: the cores over the instances; else all].",
)
@click.option(
    "--queue-delay-us",
    type=click.IntRange(min=0),
    help="Triton: how long dynamic batching may hold a request for others, in microseconds [100].",
)
@click.option(
    "--golden",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Samples in the larger golden case of a file (a deployment: each route's measured batch).",
)
@click.option("--data", type=click.Path(dir_okay=False), help="Golden inputs as .npz [digits, else random].")
@input_option("Sizes of dynamic dims for random golden inputs (NAME:DIMS[:DTYPE]).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of random golden inputs.")
@click.option("--force", is_flag=True, help="Replace an existing package.")
@json_option
@json_out_option
@verbose_option
def package_command(
    source: str,
    output: str,
    fmt: str,
    ort_style: str | None,
    type_reduction: bool | None,
    name: str | None,
    max_batch_size: int | None,
    instances: int | None,
    threads: int | None,
    queue_delay_us: int | None,
    golden: int,
    data: str | None,
    inputs: tuple[Any, ...],
    seed: int,
    force: bool,
    as_json: bool,
    json_out: str | None,
) -> None:
    """Package MODEL.onnx or a tuned DEPLOY_DIR for its target with a manifest (every file's sha256, specs,
    labels, preprocessing, session settings, tolerances) and golden vectors; `edgenn verify` proves it there."""
    from edgenn.package import PackageOptions, package
    from edgenn.report import render_package

    if json_out:
        from edgenn.bench import check_output_path

        check_output_path(json_out, "--json-out")
    only = {
        "ort": {"--ort-style": ort_style, "--type-reduction": type_reduction},
        "triton": {
            "--name": name,
            "--max-batch-size": max_batch_size,
            "--instances": instances,
            "--queue-delay-us": queue_delay_us,
        },
    }
    for owner, given in only.items():
        for flag, value in given.items():
            if value is not None and fmt != owner:
                raise click.UsageError(f"{flag} is for --format {owner}; this package is --format {fmt}")
    defaults = PackageOptions()
    options = PackageOptions(
        format=fmt,
        ort_style=ort_style or defaults.ort_style,
        type_reduction=bool(type_reduction),
        name=name,
        max_batch_size=defaults.max_batch_size if max_batch_size is None else max_batch_size,
        instances=instances or defaults.instances,
        threads=threads,
        queue_delay_us=defaults.queue_delay_us if queue_delay_us is None else queue_delay_us,
        golden=golden,
        data=data,
        input_specs=inputs,
        seed=seed,
        force=force,
        verbose=is_verbose(),
    )
    on_step = None if as_json else (lambda text: click.echo(f"  {text}...", err=True))
    result = package(source, output, options, on_step=on_step)
    _write_json_out(json_out, result.to_dict())
    click.echo(to_json(result.to_dict()) if as_json else render_package(result))


@cli.command(
    "verify",
    epilog=examples(
        "edgenn verify lenet5-pkg",
        "edgenn verify repo --threads 1 --json",
    ),
)
@click.argument("folder", metavar="PACKAGE")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads [the package's].")
@click.option(
    "--seconds", type=click.FloatRange(min=0), default=0.25, show_default=True, help="Timing per golden case."
)
@json_option
@json_out_option
@verbose_option
def verify_command(folder: str, threads: int | None, seconds: float, as_json: bool, json_out: str | None) -> None:
    """Check every file of PACKAGE against its sha256, load the model as the target would, run the golden
    vectors and time them here. Exit 0 only when everything holds, 3 when a check fails."""
    from edgenn.runtime.verify import render_verify, verify_package

    report = verify_package(folder, threads=threads, seconds=seconds)
    _write_json_out(json_out, report.to_dict())
    click.echo(to_json(report.to_dict()) if as_json else render_verify(report))
    if not report.passed:
        if as_json:
            sys.exit(EXIT_CHECK_FAILED)
        raise CheckFailed(f"{folder} does not verify: {report.failures[0] if report.failures else 'no golden case'}")


# --------------------------------------------------------------------------------------- serve
def _require(module: str, extra: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise EdgennError(f"{what} needs {module}, which this install lacks: pip install 'edgenn[{extra}]'")


@cli.command(
    "serve",
    epilog=examples(
        "edgenn serve models/lenet5/model.onnx                       # 127.0.0.1:8000, one replica",
        "edgenn serve models/simple_cnn/deploy --replicas 2 --max-batch-size 32 --batch-wait-ms 2",
        "edgenn serve model.onnx --min-replicas 1 --max-replicas 4 --address auto   # join a running cluster",
        "edgenn serve model.onnx --replicas 2 --print-config serve.yaml             # for `serve deploy`",
    ),
)
@click.argument("model_path", metavar="MODEL.onnx|DEPLOY_DIR")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Replicas (fixed).")
@click.option("--min-replicas", type=click.IntRange(min=0), help="Autoscaling: the fewest replicas.")
@click.option("--max-replicas", type=click.IntRange(min=1), help="Autoscaling: the most replicas.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="1: no batching.")
@click.option(
    "--batch-wait-ms", type=click.FloatRange(min=0), default=5.0, show_default=True, help="Wait to fill a batch."
)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Threads per replica.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--max-body-mb", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True)
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True)
@click.option(
    "--request-timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Ray's proxy cuts off a request (a slow upload included) that takes longer.",
)
@click.option("--address", help="An existing Ray cluster (auto, or ray://host:port) [a local Ray instance].")
@click.option(
    "--print-config", "config_out", metavar="FILE", help="Write a Ray Serve config for `serve deploy` (-: stdout)."
)
@verbose_option
def serve_command(
    model_path: str,
    replicas: int,
    min_replicas: int | None,
    max_replicas: int | None,
    max_batch_size: int,
    batch_wait_ms: float,
    threads: int,
    host: str,
    port: int,
    max_body_mb: float,
    max_pixels: int,
    request_timeout_s: float,
    address: str | None,
    config_out: str | None,
) -> None:
    """Serve MODEL (.onnx or a tuned folder) on Ray Serve: POST /predict, POST /classify, GET /healthz, GET /model,
    with dynamic batching and replicas. The model is checked before Ray starts; Ctrl-C stops the service."""
    _require("ray", "serve", "edgenn serve")
    from edgenn.serve import ServeOptions, check_model, run, serve_config

    options = ServeOptions(
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        threads=threads,
        host=host,
        port=port,
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        max_pixels=max_pixels,
        request_timeout_s=request_timeout_s,
    ).checked()
    if config_out:
        check_model(model_path, options)
        text = serve_config(model_path, options)
        if config_out == "-":
            click.echo(text, nl=False)
        else:
            from edgenn.fileio import write_text_atomic

            write_text_atomic(config_out, text)
            click.echo(f"wrote {config_out}: serve deploy {config_out}")
        return
    click.echo(f"serving {model_path} at http://{host}:{port} (Ctrl-C stops)", err=True)
    run(model_path, options, address=address)


@cli.command(
    "score",
    epilog=examples(
        "edgenn score models/lenet5/model.onnx pictures/ -o scores.parquet --actors 2",
        "edgenn score model.onnx inputs.parquet -o out.parquet --batch-size 256 --raw",
        "edgenn score model.onnx arrays/ -o out.parquet --address auto   # on a running cluster",
    ),
)
@click.argument("model_path", metavar="MODEL.onnx|DEPLOY_DIR")
@click.argument("source", metavar="INPUT")
@click.option("-o", "--out", "output", required=True, help="The Parquet file to write.")
@click.option("--actors", type=click.IntRange(min=1), default=1, show_default=True, help="Actors, one Model each.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Rows per batch.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Threads per actor.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--raw", is_flag=True, help="Raw outputs, even for a classifier.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True)
@click.option("--address", help="An existing Ray cluster (auto, or ray://host:port) [a local Ray instance].")
@json_option
@verbose_option
def score_command(
    model_path: str,
    source: str,
    output: str,
    actors: int,
    batch_size: int,
    threads: int,
    top_k: int,
    raw: bool,
    max_pixels: int,
    address: str | None,
    as_json: bool,
) -> None:
    """Score every picture, .npy/.npz file or Parquet row of INPUT with MODEL on Ray Data, into one Parquet file:
    each row's id with its top-k labels and scores (or raw outputs) and an error column."""
    _require("ray", "score", "edgenn score")
    from edgenn.score import ScoreOptions, score

    options = ScoreOptions(
        actors=actors,
        batch_size=batch_size,
        threads=threads,
        top_k=top_k,
        raw=raw,
        max_pixels=max_pixels,
        address=address,
    )

    def progress(done: int, total: int) -> None:
        if not as_json:
            click.echo(f"  scored {done}" + (f" of {total}" if total > 0 else "") + " rows", err=True)

    result = score(model_path, source, output, options, on_progress=progress)
    if as_json:
        click.echo(to_json(result.to_dict()))
        return
    click.echo(
        key_values(
            [
                ("output", result.output),
                ("rows", f"{result.rows_in} in, {result.rows_out} out, {result.errors} with an error"),
                ("time", f"{result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s, Ray start included)"),
            ]
            + [("error", e) for e in result.first_errors]
        )
    )


# --------------------------------------------------------------------------------------- bench
@cli.command(
    "bench",
    epilog=examples(
        "edgenn bench models/lenet5/model.onnx --eager lenet5 --batch 1,64 --threads 1,2",
        "edgenn bench unet.onnx --eager tests/user_models.py:unet --input image:1x3x64x64",
        "edgenn bench a.onnx b.onnx --provider all --precision f32,bf16 --json > bench.json",
    ),
)
@click.argument("models", nargs=-1, metavar="[MODEL.onnx]...")
@click.option(
    "--eager", metavar="SOURCE", help="Eager PyTorch baseline: a zoo name (with --weights) or file.py:factory."
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Trained weights of the --eager zoo model.")
@click.option(
    "--provider",
    "providers",
    default="auto",
    show_default=True,
    callback=_bench_providers,
    help="cpu, openvino[:DEVICE], cuda, tensorrt, auto, all, or a comma list; those not here are skipped, "
    "with the reason.",
)
@click.option(
    "--precision",
    "precisions",
    default="f32",
    show_default=True,
    callback=_precision_list,
    help="f32, bf16, f16 or a comma list: every provider at every precision its device offers.",
)
@click.option(
    "--fallback",
    is_flag=True,
    help="Let the CPU provider run the nodes a provider refuses, instead of skipping that provider (and say so).",
)
@click.option("--threads", default="1", show_default=True, callback=_int_list, help="Thread counts, e.g. 1,2.")
@click.option(
    "--batch", "batches", default="1", show_default=True, callback=_int_list, help="Batch sizes, e.g. 1,8,64."
)
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed calls per variant and point.")
@click.option("--runs", type=int, help="Timed calls per variant and point (instead of --seconds).")
@click.option("--seconds", type=float, help="Time budget per point, all variants together [1.0].")
@click.option("--rounds", type=int, default=25, show_default=True, help="Interleaved rounds per point.")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    callback=_input_specs,
    metavar="NAME:DIMS[:DTYPE]",
    help="Sizes of dynamic dims other than batch, e.g. input:Bx8x8 (the first dim comes from --batch).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@json_out_option
@json_option
@click.option("--csv", "csv_path", metavar="FILE", help="Write one row per variant and point as CSV.")
@click.option("--plot", "plot_path", metavar="FILE.png", help="Plot latency against batch size (needs matplotlib).")
@click.option(
    "--profile",
    is_flag=True,
    help="Also time every node (onnxruntime's profiler; OpenVINO's counters where the openvino package is "
    "installed) and say where each model's time goes against the first.",
)
@verbose_option
def bench_command(
    models: tuple[str, ...],
    eager: str | None,
    weights: str | None,
    providers: tuple[str, ...],
    precisions: tuple[str, ...],
    fallback: bool,
    threads: tuple[int, ...],
    batches: tuple[int, ...],
    warmup: int,
    runs: int | None,
    seconds: float | None,
    rounds: int,
    inputs: tuple[Any, ...],
    seed: int,
    json_out: str | None,
    as_json: bool,
    csv_path: str | None,
    plot_path: str | None,
    profile: bool,
) -> None:
    """Time ONNX MODELs (and an eager PyTorch baseline) on onnxruntime providers, interleaved; with --profile,
    also per node, and where each model's time goes against the first."""
    from tqdm import tqdm

    from edgenn.bench import BenchOptions, bench, check_output_path, require_matplotlib, write_csv, write_plot
    from edgenn.fileio import write_text_atomic

    if runs is not None and seconds is not None:
        raise EdgennError("give --runs or --seconds, not both")
    json_path = json_out
    for path, flag in ((json_path, "--json-out"), (csv_path, "--csv"), (plot_path, "--plot")):
        if path:
            check_output_path(path, flag)
    if plot_path:
        require_matplotlib()
    options = BenchOptions(
        providers=providers,
        precisions=precisions,
        fallback=fallback,
        threads=threads,
        batches=batches,
        warmup=warmup,
        runs=runs,
        seconds=1.0 if seconds is None else seconds,
        rounds=rounds,
        inputs=inputs,
        seed=seed,
        profile=profile,
    )
    bar = tqdm(
        total=len(threads) * len(batches),
        desc="bench",
        unit="point",
        file=sys.stderr,
        disable=True if as_json else None,
        leave=False,
    )

    def on_point(done: int, total: int, label: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(label)

    try:
        report = bench(models, eager, weights, options, progress=on_point)
    finally:
        bar.close()
    if json_path:
        write_text_atomic(json_path, to_json(report.to_dict()))
    if csv_path:
        write_csv(report, csv_path)
    if plot_path:
        write_plot(report, plot_path)
    if as_json:
        click.echo(to_json(report.to_dict()), nl=False)
        return
    click.echo(render_bench(report))
    for path in (json_path, csv_path, plot_path):
        if path:
            click.echo(f"wrote {path}")


# --------------------------------------------------------------------------------------- build
@cli.command("build")
@click.argument("models", nargs=-1)
@click.option("--all", "build_all", is_flag=True, help="Build every trainable zoo model.")
@click.option("--models-dir", type=click.Path(file_okay=False), default="models", show_default=True)
@click.option("--force", is_flag=True, help="Redo every stage, even where nothing changed.")
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Quantization budget in accuracy points.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@verbose_option
def build_command(
    models: tuple[str, ...],
    build_all: bool,
    models_dir: str,
    force: bool,
    max_accuracy_drop: float,
    seed: int,
    as_json: bool,
) -> None:
    """Train, export, validate, quantize and bench zoo MODELS into MODELS_DIR/<name>/ with a model card."""
    from pathlib import Path

    from tqdm import tqdm

    from edgenn.build import STAGES, BuildOptions, build, buildable

    names = buildable() if build_all else list(models)
    if not names:
        raise click.UsageError("name one or more models, or --all")
    options = BuildOptions(
        models_dir=Path(models_dir), force=force, seed=seed, max_accuracy_drop=max_accuracy_drop, verbose=is_verbose()
    )
    bar = tqdm(total=len(names) * len(STAGES), desc="build", unit="stage", file=sys.stderr, disable=as_json or None)
    seen: set[tuple[str, str]] = set()

    def progress(model: str, what: str) -> None:
        stage = what.split(":", 1)[0]
        if (model, stage) not in seen:
            seen.add((model, stage))
            bar.update(1)
        bar.set_description(f"{model} {what}"[:60])

    try:
        results = build(names, options, progress)
    finally:
        bar.close()
    if as_json:
        click.echo(to_json([r.to_dict() for r in results]))
        return
    click.echo(
        table(
            ["model", "stage", "done", "seconds", "result"],
            [
                (r.name, s.stage, "unchanged" if s.skipped else "built", f"{s.seconds:.1f}", s.summary)
                for r in results
                for s in r.stages
            ],
        )
    )
    for r in results:
        click.echo(f"{r.name}: {r.folder}/card.json, {r.folder}/README.md")


if __name__ == "__main__":
    main()
