"""`anchorlab` command line: run / validate / plot recipes, train the toy model."""
from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from pathlib import Path

import click

from .errors import UserError

log = logging.getLogger("anchorlab")


def _rank() -> tuple[int, int]:
    """(rank, world size) under torchrun, else (0, 1); read from the environment, nothing is joined."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _setup_logging(verbose: bool) -> None:
    """Under torchrun each line names its rank; ranks other than 0 log only warnings and errors."""
    rank, world = _rank()
    level = logging.DEBUG if verbose else logging.INFO if rank == 0 else logging.WARNING
    where = f"[rank {rank}/{world}]" if world > 1 else ""
    logging.basicConfig(level=level, format=f"anchorlab{where}: %(message)s")
    if rank != 0:  # progress bars on rank 0 only (what TQDM_DISABLE=1 does, but tqdm is imported already)
        from tqdm import std

        std.tqdm.__init__ = functools.partialmethod(std.tqdm.__init__, disable=True)
    for noisy in ("httpx", "urllib3", "filelock", "matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def user_errors(fn):
    """Print a user error as one line (no traceback unless --debug) and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            rank, world = _rank()
            if not getattr(exc, "echoed", False):  # rank 0's error raised again on another rank: printed there
                click.echo(f"error{f' [rank {rank}/{world}]' if world > 1 else ''}: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # a full disk met outside the run folder's own writers (a figure, summary.md)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or ctx.find_root().params.get("debug"):
                raise
            from .run.files import write_error

            click.echo(f"error: {write_error(exc.filename or 'a file', exc)}", err=True)
            sys.exit(2)

    return wrapper


@click.group()
@click.option("--debug", is_flag=True, help="show tracebacks")
@click.option("-v", "--verbose", is_flag=True, help="debug logging")
@click.version_option(package_name="anchorlab")
def main(debug: bool, verbose: bool) -> None:
    """Dissect how multimodal LLMs decide which modality to follow."""
    _setup_logging(verbose)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="output folder (default: recipe's output)"
)
@click.option(
    "--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="override a recipe field, e.g. data.n_samples=8"
)
@click.option("--resume", is_flag=True, help="continue an interrupted run in the same output folder")
@click.option("--force", is_flag=True, help="overwrite an existing run in the output folder")
@click.option("--remote", is_flag=True, help="run on NDIF (NDIF_HOST, NDIF_API_KEY); same as backend: ndif")
@click.option("--simulate-remote", is_flag=True,
              help="serialize every request as for NDIF but run it here (nnsight's remote='local'): no server needed")
@user_errors
def run(recipe: Path, out: Path | None, overrides: tuple[str, ...], resume: bool, force: bool, remote: bool,
        simulate_remote: bool) -> None:
    """Run RECIPE and write its results and figures."""
    from .api import run as run_api

    mode = "local" if simulate_remote else remote
    try:
        results = run_api(recipe, out, list(overrides), resume=resume, force=force, remote=mode)
    except KeyboardInterrupt:
        where = f" --out {out}" if out else ""
        sets = "".join(f" --set {s}" for s in overrides)
        click.echo(f"\ninterrupted: what was computed is stored; `anchorlab run {recipe}{where}{sets} --resume` "
                   f"continues the run", err=True)
        sys.exit(130)
    if _rank()[0] != 0:
        return  # every rank has the results; rank 0 lists them
    for name, ds in results.items():
        click.echo(f"{name}: " + ", ".join(f"{v}{tuple(ds[v].dims)}" for v in ds.data_vars))


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="output folder (default: recipe's output)"
)
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE")
@click.option("--remote", is_flag=True, help="as `run --remote`: also check NDIF_API_KEY")
@user_errors
def validate(recipe: Path, out: Path | None, overrides: tuple[str, ...], remote: bool) -> None:
    """Make every check `run` makes before it loads weights: the schema, the data, the model's config
    and tokenizer (layers, heads, windows, heads_from), the prompts' token roles, the output folder.
    Creates nothing and computes nothing."""
    import yaml

    from .api import validate as check

    parsed, checked = check(recipe, list(overrides), out, remote)
    click.echo(f"{recipe}: valid ({'; '.join(checked)})")
    click.echo(yaml.safe_dump(parsed.model_dump(mode="json"), sort_keys=False).rstrip())


@main.command()
@click.argument("result_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@user_errors
def plot(result_dir: Path) -> None:
    """Redraw the figures of every result in RESULT_DIR."""
    from .analyses import REGISTRY
    from .errors import read_file
    from .report.figures import draw

    drawn = failed = 0
    for path in sorted(result_dir.glob("*.nc")):
        try:
            ds = read_file(path, fmt="netcdf")
        except UserError as exc:  # one line per result that cannot be read; the others are drawn
            click.echo(f"error: {exc}", err=True)
            failed += 1
            continue
        if ds.attrs.get("analysis") not in REGISTRY:  # e.g. labels.nc: data, not an analysis result
            continue
        try:
            figs = draw(ds, result_dir / "figures", path.stem)
        except Exception as exc:  # noqa: BLE001 - one line per result that cannot be drawn
            click.echo(f"error: figures of {path.name} failed ({type(exc).__name__}: {exc})", err=True)
            failed += 1
            continue
        for fig in figs:
            click.echo(str(fig))
        drawn += 1
    if failed:
        raise SystemExit(2)
    if not drawn:
        raise UserError(f"{result_dir}: no anchorlab analysis results (*.nc) here")


@main.command()
@click.argument("result", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@user_errors
def provenance(result: Path) -> None:
    """Print what produced RESULT (a .nc): model and its file hashes, data, recipe, versions, times."""
    from .errors import read_file
    from .run.provenance import describe

    click.echo("\n".join(describe(read_file(result, fmt="netcdf"), result)))


@main.group("dict")
def dict_group() -> None:
    """Answer entity dictionaries (docs/method.md §1)."""


@dict_group.command("build")
@click.argument("dataset", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--source", type=click.Choice(["mc2", "jsonl"]), help="default: from the extension (.json mc2, .jsonl jsonl)"
)
@click.option(
    "--model", "models", multiple=True, metavar="MODEL_ID", help="report coverage for this tokenizer (repeatable)"
)
@click.option("--max-forms", type=int, default=10, show_default=True, help="forms per answer, the answer included")
@click.option(
    "--manual", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="YAML/JSON additions that always win"
)
@click.option("--verifier", metavar="MODULE:FUNCTION", help="keep only the candidates this callable returns")
@click.option("--verifier-url", metavar="URL", help="OpenAI-compatible endpoint that filters candidates")
@click.option("--verifier-model", metavar="NAME", help="model name sent to --verifier-url")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="default: DATASET's <name>.dictionary.json beside it"
)
@click.option("--force", is_flag=True, help="rebuild an existing dictionary file: every form it holds is kept")
@user_errors
def dict_build(dataset: Path, source, models, max_forms, manual, verifier, verifier_url, verifier_model, out,
               force) -> None:
    """Build the entity dictionary of DATASET from WordNet (offline) and print its coverage. An existing
    dictionary (it may hold hand edits) is refused unless --force, and then merged, never dropped."""
    from .dictionary.build import build_from_dataset

    _, lines = build_from_dataset(dataset, source, models, max_forms, manual, verifier, verifier_url,
                                  verifier_model, out, force=force)
    click.echo("\n".join(lines))


@main.group("data")
def data_group() -> None:
    """Datasets: stand-in images for trying MC² without COCO."""


@data_group.command("standins")
@click.argument("dataset", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder for the images")
@click.option("--layout", type=click.Choice(["coco_val", "coco_train", "plain"]), default="coco_val", show_default=True)
@click.option("--categories", help="comma-separated MC² tasks (default: all)")
@user_errors
def data_standins(dataset: Path, out: Path, layout: str, categories: str | None) -> None:
    """Write stand-in images (meaningless pictures) for MC² DATASET, named as COCO's."""
    from .data.records import select
    from .data.sources import read_records
    from .data.standins import write_standins

    records, _ = read_records("mc2", dataset)
    records = select(records, categories.split(",") if categories else None, None, 0)
    written = write_standins(records, out, layout)
    click.echo(f"wrote {len(written)} stand-in images under {out} (use it as data.image_root)")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@user_errors
def bench(args: tuple[str, ...]) -> None:
    """Run every benchmark in benchmarks/ and print one table (same as `python -m benchmarks`)."""
    import runpy

    root = Path(__file__).resolve().parents[1]
    if not (root / "benchmarks" / "__main__.py").exists():
        raise UserError("benchmarks/ comes with the source checkout; run `anchorlab bench` from a clone of the repo")
    sys.argv = ["python -m benchmarks", *args]
    sys.path.insert(0, str(root))
    runpy.run_module("benchmarks", run_name="__main__", alter_sys=True)


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="override a recipe field")
@click.option("--tokens-per-s", type=float, default=None, help="throughput of a plain forward, for the time column")
@click.option("--probe", is_flag=True,
              help="time passes of the first batch and a pilot run of one batch, no figures (loads weights)")
@click.option("--image-size", metavar="WxH", default=None,
              help="price every image at this size (e.g. 640x480, COCO's usual) instead of the files'")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="also write the estimate here"
)
@user_errors
def estimate(recipe: Path, overrides, tokens_per_s, probe, image_size, json_path) -> None:
    """Price RECIPE without running it: prompts, variants, decoder cells fast / naive, forward-
    equivalents, peak memory per batch and time. Reads the recipe, the data and the model config only
    (meta device: no weights)."""
    import json

    from .estimate import estimate_recipe
    from .estimate.report import format_report

    size = None
    if image_size:
        try:
            w, h = (int(x) for x in image_size.lower().split("x"))
            size = (w, h)
        except ValueError:
            raise UserError(f"--image-size {image_size!r}: write it as WIDTHxHEIGHT, e.g. 640x480") from None
    est = estimate_recipe(recipe, list(overrides), tokens_per_s, probe, size)
    click.echo(format_report(est))
    if json_path:
        json_path.write_text(json.dumps(est, indent=2))


@main.group("shapes")
def shapes_group() -> None:
    """The paper's models at their real shapes, with random weights (no download)."""


@shapes_group.command("build")
@click.argument("name")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder for the checkpoint"
)
@click.option("--layers", type=int, default=None, help="decoder layers (default: the model's full depth)")
@click.option("--vision-layers", type=int, default=None, help="vision-tower layers (default: full depth)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dtype", type=click.Choice(["bfloat16", "float16", "float32"]), default="bfloat16", show_default=True)
@click.option(
    "--config-only", is_flag=True, help="config, tokenizer and processor, no weights (for anchorlab estimate)"
)
@user_errors
def shapes_build(name: str, out: Path, layers, vision_layers, seed: int, dtype: str, config_only: bool) -> None:
    """Write NAME (qwen2.5-vl-7b, internvl3-8b, llava-1.5-7b, qwen2.5-7b) with random weights to OUT;
    `model.id: OUT` then loads it through from_pretrained like a hub checkpoint."""
    from .models.shapes import build_shape, get_shape

    shape = get_shape(name)
    path = build_shape(name, out, layers, vision_layers, seed, dtype, config_only)
    weights = "no weights" if config_only else "random weights"
    click.echo(f"wrote {name} ({shape.hub_id} shape: {shape.notes}; layers={layers or 'full'}, "
               f"vision layers={vision_layers or 'full'}, {weights}, {dtype}) to {path}")


@shapes_group.command("list")
def shapes_list() -> None:
    """The shapes `anchorlab shapes build` knows."""
    from .models.shapes import SHAPES

    for name, shape in SHAPES.items():
        click.echo(f"{name:15s} {shape.hub_id:32s} {shape.notes}")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--circuit", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="circuit.json (default: beside the run's model, e.g. the shipped toy:anchored)")
@click.option("--amplify-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="a second run folder to take heads_amplify from (e.g. the flawed twin's run)")
@user_errors
def verify(run_dir: Path, circuit: Path | None, amplify_dir: Path | None) -> None:
    """Score a finished run against the model's known circuit: verify.json + a summary.md section."""
    import json

    from .report.verify import verify as score

    click.echo(json.dumps(score(run_dir, circuit, amplify_dir), indent=1, default=float))


if __name__ == "__main__":  # pragma: no cover
    main()
