"""The `edgenn` command: parse options, call the library, render what it returns. No logic here."""

from __future__ import annotations

import sys
import traceback
import warnings
from typing import Any, Callable

import click

from edgenn.errors import EdgennError
from edgenn.report import key_values, percent, table, to_json


class EdgennGroup(click.Group):
    """Turns library errors into one line and a non-zero exit; tracebacks only with --verbose."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except EdgennError as exc:
            if _verbose(ctx):
                traceback.print_exc()
            raise click.ClickException(str(exc)) from None
        except Exception as exc:  # a bug or an unforeseen failure: still one line for people
            if _verbose(ctx):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {first} (run with --verbose for the traceback)"
            ) from None


def _verbose(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("verbose"))


def _set_verbose(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.find_root().ensure_object(dict)["verbose"] = True
    return value


def verbose_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--verbose", "-v", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
        help="Show library noise and full tracebacks.",
    )(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def is_verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and _verbose(ctx))


@click.group(cls=EdgennGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgenn")
@verbose_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Export PyTorch models to validated ONNX, quantize, benchmark and run them."""
    ctx.ensure_object(dict)
    if not _verbose(ctx):
        warnings.filterwarnings("ignore")


def main() -> None:
    cli(prog_name="edgenn")


# ----------------------------------------------------------------------------------------- zoo
@cli.command("zoo")
@json_option
def zoo_command(as_json: bool) -> None:
    """List the reference models."""
    from edgenn import zoo

    entries = [zoo.entry(n) for n in zoo.names()]
    if as_json:
        click.echo(to_json([{"name": e.name, "inputs": [s.to_dict() for s in e.inputs],
                             "description": e.description, "accuracy_target": e.accuracy_target}
                            for e in entries]))
        return
    click.echo(table(["model", "input", "target", "description"],
                     [(e.name, " ".join(str(s) for s in e.inputs), percent(e.accuracy_target, 0), e.description)
                      for e in entries]))


# --------------------------------------------------------------------------------------- train
@cli.command("train")
@click.argument("model")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the training split (model default).")
@click.option("--optimizer", type=click.Choice(["adamw", "adam", "sgd", "rmsprop"]), help="sgd uses momentum.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--loss", type=click.Choice(["cross_entropy", "mse"]))
@click.option("--init", "init", type=click.Choice(
    ["default", "uniform", "normal", "zeros", "ones", "constant", "kaiming_normal", "kaiming_uniform",
     "xavier_normal", "xavier_uniform"]), help="Weight init for every Linear/Conv/RNN (default: the model's own).")
@click.option("--schedule", type=click.Choice(["onecycle", "cosine", "constant"]))
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--shift", type=click.FloatRange(0, 0.5), help="Random translation augmentation (fraction of size).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder [runs/MODEL].")
@json_option
@verbose_option
def train_command(model: str, out_dir: str | None, as_json: bool, **options: Any) -> None:
    """Train a zoo MODEL on scikit-learn's digits; writes model.safetensors and train.json."""
    from tqdm import tqdm

    from edgenn.train import TrainConfig, train

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
    click.echo(key_values([
        ("model", model),
        ("test accuracy", percent(result.test_accuracy)),
        ("val accuracy", f"{percent(result.val_accuracy)} (epoch {result.best_epoch} of {cfg.epochs})"),
        ("training time", f"{result.train_seconds:.1f} s"),
        ("weights", result.weights_path),
        ("record", result.record_path),
    ]))


# ------------------------------------------------------------------------------------- summary
@cli.command("summary")
@click.argument("model")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@json_option
@verbose_option
def summary_command(model: str, batch_size: int, as_json: bool) -> None:
    """Per-layer output shapes and parameter counts of a zoo MODEL."""
    from edgenn import zoo
    from edgenn.summary import summarize

    result = summarize(zoo.create(model), zoo.entry(model).inputs, batch_size, name=model)
    if as_json:
        click.echo(to_json(result.to_dict()))
        return
    click.echo(table(["layer", "type", "output shape", "params"],
                     [(r.name, r.kind, "x".join(map(str, r.output_shape)), r.parameters) for r in result.layers],
                     title=f"{model} (batch {batch_size})"))
    click.echo(key_values([
        ("total params", f"{result.total_parameters:,}"),
        ("trainable params", f"{result.trainable_parameters:,}"),
        ("params size", f"{result.parameter_bytes / 1024:.1f} KiB"),
    ]))


# -------------------------------------------------------------------------------------- export
# (section owned by export: issue 3)


# ------------------------------------------------------------------------------------- predict
# (section owned by the runtime: issue 4)


# ------------------------------------------------------------------------------------ quantize
# (section owned by quantize: issue 5)


# --------------------------------------------------------------------------------------- bench
# (section owned by bench: issue 6)


# --------------------------------------------------------------------------------------- build
# (section owned by build: issue 7)


if __name__ == "__main__":
    main()
