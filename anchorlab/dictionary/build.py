"""The answer entity dictionary (docs/method.md §1): up to N surface forms per answer, as a JSON file.

Candidates come from WordNet through NLTK (lemma variants, then synonyms of the answer's frequent
senses), an optional verifier keeps the good ones, and a user's manual file always wins. The file
is written with sorted keys and stable form order, so rebuilding it gives the same bytes. Token
ids are not stored: they depend on the tokenizer and are derived at run time (entities.py).

A dictionary is user data (hand edits, earlier --manual entries): an existing file is never
overwritten unless asked (--force), and then every form it holds is kept; nothing is dropped.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from ..data.dictionary_file import FORMAT, default_path, load
from ..errors import UserError, read_file

log = logging.getLogger("anchorlab")

# Words skipped when a multi-word answer has no WordNet entry and its content words stand in for it.
STOPWORDS = {"a", "an", "the", "of", "in", "on", "at", "with", "to", "for", "and", "or", "some", "its", "his",
             "her", "their", "is", "are", "by", "from"}

Verifier = Callable[[str, list[str]], "list[str]"]
Candidates = Callable[[str], "list[str]"]


def _dedupe(forms, exclude=()) -> list[str]:
    seen = {f.lower() for f in exclude}
    out = []
    for form in forms:
        form = " ".join(form.split())
        if form and form.lower() not in seen:
            seen.add(form.lower())
            out.append(form)
    return out


def wordnet_candidates(answer: str, wn=None) -> list[str]:
    """Candidate forms, best first: lemma variants (morphy), then the lemma names of the senses the
    answer is mostly used in (SemCor counts >= 10% of its top sense's; sense 1 when WordNet has no
    counts), most frequent first. A multi-word answer WordNet lacks ("playing golf") gives its content
    words ("playing", "golf"), then the expansions of the first; the first-token rule later drops
    those the competing answer shares. Capitalised names are skipped for lower-case answers."""
    if wn is None:
        from .wordnet import wordnet

        wn = wordnet()
    out: list[str] = []
    word = answer
    if " " in answer and not wn.synsets(answer.replace(" ", "_")):
        content = [w for w in answer.split() if w.lower() not in STOPWORDS]
        if not content:
            return []
        out.extend(content)  # each content word: "golf" is what tells "playing golf" from "playing tag"
        word = content[0]
    key = word.replace(" ", "_")
    bases = [b for b in dict.fromkeys(wn.morphy(key.lower(), pos) for pos in "nvar") if b]
    out.extend(b.replace("_", " ") for b in bases)
    names = {key.lower(), *bases}
    synsets = wn.synsets(key)
    counts = [sum(lemma.count() for lemma in s.lemmas() if lemma.name().lower() in names) for s in synsets]
    top = max(counts, default=0)
    # the senses the word is really used in: >= 10% of its most frequent sense's count (else sense 1)
    scored = [(-c, i, s) for i, (s, c) in enumerate(zip(synsets, counts)) if (c >= max(1, top / 10) if top else i == 0)]
    for _, _, synset in sorted(scored, key=lambda t: t[:2]):
        for name in synset.lemma_names():
            if name[:1].isupper() and not word[:1].isupper():
                continue
            out.append(name.replace("_", " "))
    return _dedupe(out, exclude=[answer])


def load_manual(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """A user's additions (YAML or JSON): `answer: [forms]` or `answer: {add: [...], remove: [...]}`."""
    path = Path(path)
    data = read_file(path, "--manual", "yaml", expect=dict,
                     shape="a mapping answer -> [forms] (or -> {add: [...], remove: [...]})")
    out = {}
    for answer, value in data.items():
        entry = {"add": value, "remove": []} if isinstance(value, list) else value
        if not isinstance(entry, dict) or set(entry) - {"add", "remove"}:
            raise UserError(
                f"--manual {path}: entry {answer!r}: expected a list of forms or {{add: [...], remove: [...]}}"
            )
        lists = {k: entry.get(k) or [] for k in ("add", "remove")}
        for k, forms in lists.items():
            if not isinstance(forms, list) or not all(isinstance(f, (str, int)) and str(f).strip() for f in forms):
                raise UserError(f"--manual {path}: entry {answer!r}: {k} must be a list of non-empty strings")
        out[" ".join(str(answer).split())] = {k: [str(f) for f in v] for k, v in lists.items()}
    return out


def build(answers, max_forms: int = 10, manual: dict | None = None, verifier: Verifier | None = None,
          candidates: Candidates | None = None, kept: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """answer -> forms: the answer first, then manual additions (always kept, even past max_forms),
    then the forms of an existing dictionary (`kept`: hand edits, never dropped, even by a manual
    removal), then verified candidates minus manual removals, up to `max_forms` forms in all.
    Answers only `kept` has (no longer in the dataset) stay as they are."""
    if max_forms < 1:
        raise UserError("--max-forms must be at least 1")
    candidates = candidates or wordnet_candidates
    manual, kept = manual or {}, kept or {}
    by_lower = {k.lower(): v for k, v in manual.items()}
    unused = set(manual)
    out = {}
    for answer in sorted(set(answers)):
        entry = manual.get(answer) or by_lower.get(answer.lower()) or {"add": [], "remove": []}
        unused.discard(next((k for k in manual if k.lower() == answer.lower()), None))
        auto = [c for c in candidates(answer) if c.lower() != answer.lower()]
        if verifier is not None and auto:
            kept_auto = verifier(answer, list(auto))
            auto = [c for c in auto if c in set(kept_auto)]
        removed = {f.lower() for f in entry["remove"]}
        held = kept.get(answer, [])
        for form in held:
            if form.lower() in removed:
                log.warning("manual file removes %r from %r, but the existing dictionary holds it: kept (edit the "
                            "dictionary to drop it)", form, answer)
        forms = _dedupe([answer, *entry["add"], *held])
        room = max(0, max_forms - len(forms))
        forms += [c for c in _dedupe(auto, exclude=forms) if c.lower() not in removed][:room]
        out[answer] = forms
    out.update({answer: forms for answer, forms in kept.items() if answer not in out})
    if unused:
        log.warning("manual file: %d entr(ies) match no answer of the dataset: %s", len(unused), sorted(unused)[:5])
    return dict(sorted(out.items()))


def document(forms: dict[str, list[str]], dataset: Path, source: str, n_samples: int, max_forms: int,
             verifier: str | None, manual: Path | None, wordnet_version: str | None) -> dict:
    return {
        "anchorlab_dictionary": FORMAT,
        "dataset": Path(dataset).name, "source": source, "samples": n_samples, "answers": len(forms),
        "max_forms": max_forms, "candidates": f"WordNet {wordnet_version} via NLTK" if wordnet_version else "none",
        "verifier": verifier, "manual": Path(manual).name if manual else None,
        "forms": forms,
    }


def write(path: Path, doc: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def build_from_dataset(dataset: Path, source: str | None = None, models=(), max_forms: int = 10,
                       manual: Path | None = None, verifier: str | None = None, verifier_url: str | None = None,
                       verifier_model: str | None = None, out: Path | None = None,
                       candidates: Candidates | None = None, force: bool = False) -> tuple[Path, list[str]]:
    """`anchorlab dict build`: read the dataset's answers (no images needed), build, write, and
    report coverage per model tokenizer. Returns the file written and the lines to print. An existing
    dictionary is refused unless `force`, and then merged: every form it holds is kept."""
    from ..data.sources import read_records

    dataset = Path(dataset)
    target = Path(out) if out else default_path(dataset)
    kept = None
    if target.exists():
        if not force:
            raise UserError(f"{target} already exists and may hold hand edits; pass --out PATH to write elsewhere, "
                            "or --force to rebuild it (every form it holds is kept; --manual and WordNet only add)")
        kept = load(target)
    source = source or ("jsonl" if dataset.suffix == ".jsonl" else "mc2" if dataset.suffix == ".json" else None)
    if source is None:
        raise UserError(f"{dataset}: cannot tell the source from the extension; pass --source mc2|jsonl")
    if verifier and verifier_url:
        raise UserError("--verifier and --verifier-url: choose one")
    records, _ = read_records(source, dataset)
    check = None
    if verifier:
        from .verifiers import from_callable

        check = from_callable(verifier)
    elif verifier_url:
        from .verifiers import from_url

        check = from_url(verifier_url, verifier_model)
    wn_version = None
    if candidates is None:
        from .wordnet import wordnet

        wn = wordnet()
        wn_version = wn.get_version()
        candidates = lambda answer: wordnet_candidates(answer, wn)  # noqa: E731
    answers = [a for r in records for a in (r.answer_vision, r.answer_text)]
    forms = build(answers, max_forms, load_manual(manual) if manual else None, check, candidates, kept)
    label = verifier or (f"{verifier_url} ({verifier_model or 'default'})" if verifier_url else None)
    path = write(target, document(forms, dataset, source, len(records), max_forms, label, manual, wn_version))
    sizes = [len(v) for v in forms.values()]
    spread = ", ".join(f">= {t}: {sum(s >= t for s in sizes)}" for t in sorted({1, 3, max_forms}))
    lines = [f"wrote {path}: {len(forms)} distinct answers from {len(records)} samples, "
             f"{sum(sizes) / max(len(sizes), 1):.1f} forms per answer on average (answers with {spread} forms)"]
    if kept is not None:
        lines.append(f"merged with the existing {path.name}: all {sum(map(len, kept.values()))} of its forms kept "
                     "(after each answer's --manual additions; WordNet fills up to --max-forms)")
    if models:
        from ..models.loading import load_tokenizer
        from .coverage import coverage

        pairs = [(r.id, r.answer_vision, r.answer_text) for r in records]
        for model in models:
            lines += coverage(load_tokenizer(model), model, pairs, forms).lines()
    return path, lines
