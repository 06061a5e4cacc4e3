"""`python -m organisms train --variant NAME --out DIR`: retrain a shipped toy model from scratch."""
from __future__ import annotations

import json
from pathlib import Path

import click

VARIANTS = ["arbiter", "arbiter-flawed", "anchored", "anchored-flawed"]


@click.group()
def main() -> None:
    """Train the shipped toy MLLMs and model organisms (their weights ship under anchorlab/toy/weights)."""


@main.command("train")
@click.option("--variant", type=click.Choice(VARIANTS), default="arbiter", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder for the trained model")
@click.option("--seed", type=int, default=None, help="training seed (default: the shipped model's)")
@click.option("--steps", type=int, default=None, help="optimizer steps (default: the shipped model's)")
def train(variant: str, out: Path, seed: int | None, steps: int | None) -> None:
    """Train a toy model from scratch; prints its metrics (compare with the shipped training.json)."""
    kwargs = {k: v for k, v in (("seed", seed), ("steps", steps)) if v is not None}
    if variant.startswith("anchored"):  # the model organism: interchange training + ground-truth checks
        import torch

        from .anchored import train_organism

        torch.set_num_threads(1)  # the shipped weights' thread count (bit-identical on the same machine)
        metrics = train_organism(variant, out, **kwargs)
    else:
        from .train import train_toy

        metrics = train_toy(variant, out, **kwargs)
    click.echo(json.dumps(metrics, indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
