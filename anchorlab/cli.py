"""`anchorlab` command line: run / validate / plot recipes, train the toy model."""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from .errors import UserError

log = logging.getLogger("anchorlab")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="anchorlab: %(message)s")
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
            click.echo(f"error: {exc}", err=True)
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
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="output folder (default: recipe's output)")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE", help="override a recipe field, e.g. data.n_samples=8")
@click.option("--resume", is_flag=True, help="continue an interrupted run in the same output folder")
@click.option("--force", is_flag=True, help="overwrite an existing run in the output folder")
@user_errors
def run(recipe: Path, out: Path | None, overrides: tuple[str, ...], resume: bool, force: bool) -> None:
    """Run RECIPE and write its results and figures."""
    from .api import run as run_api

    results = run_api(recipe, out, list(overrides), resume=resume, force=force)
    for name, ds in results.items():
        click.echo(f"{name}: " + ", ".join(f"{v}{tuple(ds[v].dims)}" for v in ds.data_vars))


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE")
@user_errors
def validate(recipe: Path, overrides: tuple[str, ...]) -> None:
    """Check RECIPE against the schema without loading a model."""
    import yaml

    from .recipe import load_recipe

    parsed, _ = load_recipe(recipe, list(overrides))
    click.echo(f"{recipe}: valid")
    click.echo(yaml.safe_dump(parsed.model_dump(mode="json"), sort_keys=False).rstrip())


@main.command()
@click.argument("result_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@user_errors
def plot(result_dir: Path) -> None:
    """Redraw the figures of every result in RESULT_DIR."""
    import xarray as xr

    from .analyses import REGISTRY

    found = sorted(result_dir.glob("*.nc"))
    if not found:
        raise UserError(f"{result_dir}: no .nc results here")
    for path in found:
        with xr.open_dataset(path) as ds:
            kind = ds.attrs.get("analysis")
            if kind not in REGISTRY:
                raise UserError(f"{path}: not an anchorlab result (attrs.analysis={kind!r})")
            for fig in REGISTRY[kind].plot(ds.load(), result_dir / "figures"):
                click.echo(str(fig))


@main.group()
def toy() -> None:
    """The shipped toy MLLM."""


@toy.command("train")
@click.option("--variant", type=click.Choice(["arbiter", "arbiter-flawed"]), default="arbiter", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder for the trained model")
@click.option("--seed", type=int, default=None, help="training seed (default: the shipped model's)")
@click.option("--steps", type=int, default=None, help="optimizer steps (default: the shipped model's)")
@user_errors
def toy_train(variant: str, out: Path, seed: int | None, steps: int | None) -> None:
    """Train the toy model from scratch; prints its MFR (compare with the shipped training.json)."""
    import json

    from .toy.train import train_toy

    kwargs = {k: v for k, v in (("seed", seed), ("steps", steps)) if v is not None}
    metrics = train_toy(variant, out, **kwargs)
    click.echo(json.dumps(metrics, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
