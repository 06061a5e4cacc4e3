"""`python -m organisms train --variant NAME --out DIR`: retrain a shipped toy model from scratch;
`python -m organisms train --circuit SPEC --seed N --out DIR`: train an organism of the family from a circuit spec."""
from __future__ import annotations

import json
from pathlib import Path

import click

from anchorlab.data.organism_grammar import GRAMMARS

VARIANTS = ["arbiter", "arbiter-flawed", "anchored", "anchored-flawed"]


@click.group()
def main() -> None:
    """Train the shipped toy MLLMs and model organisms (their weights ship under anchorlab/toy/weights)."""


@main.command("train")
@click.option("--variant", type=click.Choice(VARIANTS), default="arbiter", show_default=True)
@click.option("--circuit", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="a circuit spec (organisms/specs/*.json): train an organism of the family by SIIT instead")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder for the trained model")
@click.option("--seed", type=int, default=None, help="training seed (default: the shipped model's / the spec's)")
@click.option("--steps", type=int, default=None, help="optimizer steps (default: the shipped model's / the spec's)")
@click.option("--from", "start_from", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="--circuit with stages: a folder its first stage (and perhaps some later ones) was saved to; "
                   "only the stages after those run")
def train(variant: str, circuit: Path | None, out: Path, seed: int | None, steps: int | None,
          start_from: Path | None) -> None:
    """Train a toy model from scratch; prints its metrics (compare with the shipped training.json)."""
    kwargs = {k: v for k, v in (("seed", seed), ("steps", steps)) if v is not None}
    if circuit is not None:  # one thread: the shipped organisms' setting (bit-identical on the same machine)
        import torch

        from .family import train_from_spec

        torch.set_num_threads(1)
        metrics = train_from_spec(circuit, out, start_from=start_from, **kwargs)
    elif variant.startswith("anchored"):  # the model organism: interchange training + ground-truth checks
        import torch

        from .anchored import train_organism

        torch.set_num_threads(1)  # the shipped weights' thread count (bit-identical on the same machine)
        metrics = train_organism(variant, out, **kwargs)
    else:
        from .train import train_toy

        metrics = train_toy(variant, out, **kwargs)
    click.echo(json.dumps(metrics, indent=2))


@main.command("measure")
@click.option("--circuit", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="the folder a spec's weights were saved to: its circuit.json and training.json are rewritten")
@click.option("--n-eval", type=int, default=256, show_default=True, help="held-out prompts per task")
def measure(circuit: Path, model_dir: Path, n_eval: int) -> None:
    """Measure a trained organism again on held-out prompts: MFR per task and the single-head interchange at each
    role, written to its circuit.json and training.json."""
    import torch

    from .family import measure_saved

    torch.set_num_threads(1)
    record = measure_saved(circuit, model_dir, n_eval)
    click.echo(json.dumps(record["heldout_mfr"], indent=2))


@main.command("sentences")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="a member's folder (anchorlab/toy/weights/organism-a, or a stage's --out)")
@click.option("--pool", type=click.Choice(GRAMMARS), default=None,
              help="measure a fresh draw of this composed pool's sentences (what a stage's keep rule reads)")
@click.option("--probe", "probes", multiple=True,
              help="measure a hand-written probe of organism_heldout.json (repeatable; 'all' for every probe)")
@click.option("--n", "n_sentences", type=int, default=300, show_default=True, help="fresh sentences drawn (--pool)")
@click.option("--seed", type=int, default=101, show_default=True,
              help="seed of the fresh draw and of its held-out prompts (101: no test reads it)")
@click.option("--prompts", "n_prompts", type=int, default=None,
              help="held-out prompts per sentence (default: 28 for --pool, 70 of seed 21 for --probe, as the tests)")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write every sentence's rates here as JSON")
def sentences(model_dir: Path, pool: str | None, probes: tuple[str, ...], n_sentences: int, seed: int,
              n_prompts: int | None, out: Path | None) -> None:
    """MFR of a member per instruction sentence: a fresh draw of a composed pool, or hand-written probes."""
    import torch

    from anchorlab.data.organism_family import _heldout, generate_samples
    from anchorlab.models.loading import load_model

    from .sentences import followed, fresh_sentences, measure

    if (pool is None) == (not probes):
        raise click.UsageError("give --pool or --probe (not both)")
    written = {k: v for k, v in _heldout()["paraphrases"].items() if isinstance(v, list)}
    names = list(written) if "all" in probes else list(probes)
    unknown = [p for p in names if p not in written]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} is not a probe of organism_heldout.json "
                                 f"({', '.join(written)})", param_hint="--probe")
    torch.set_num_threads(1)
    bundle = load_model(str(model_dir))
    if pool is not None:  # the keep rule's two readings of this seed: held-out prompts, and fresh sentences
        heldout = followed(bundle, generate_samples(256, seed))
        click.echo("held-out MFR (256 prompts per task, seed %d): %s" % (seed, " / ".join(
            f"{t} {v:.3f}" for t, v in heldout.items())))
        result = {pool: measure(bundle, fresh_sentences(pool, n_sentences, seed), n_prompts or 28, seed)}
        result[pool].update(sentence_seed=seed, heldout_mfr=heldout)
    else:
        result = {p: measure(bundle, written[p], n_prompts or 70, 21) for p in names}
    for name, r in result.items():
        click.echo(f"{name}: mean " + " / ".join(f"{t} {v:.3f}" for t, v in r["mean"].items())
                   + f"; {r['below_bar']} of {r['n_sentences']} sentences below {r['bar']} in a task")
    if out is not None:
        out.write_text(json.dumps({"model": str(model_dir), **result}, indent=1) + "\n")


@main.command("retrain-check")
@click.option("--circuit", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--shipped", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="the folder the spec's weights were saved to (its training.json gets the result)")
def retrain_check(circuit: Path, shipped: Path) -> None:
    """Retrain a spec with the seed and steps of SHIPPED's training.json on one thread, without evaluation, and
    record in that training.json whether the weights are bit-identical (sha256 of model.safetensors)."""
    import tempfile
    import time

    import torch

    from .family import train_from_spec

    torch.set_num_threads(1)
    record = json.loads((shipped / "training.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        again = train_from_spec(circuit, tmp, seed=record["seed"], steps=record["steps"], n_eval=0)
    record["bit_identical_retrain"] = {"sha256": again["weights_sha256"], "seconds": round(time.time() - t0, 1),
                                       "identical": again["weights_sha256"] == record["weights_sha256"],
                                       "torch_threads": torch.get_num_threads()}
    (shipped / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    click.echo(json.dumps(record["bit_identical_retrain"], indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
