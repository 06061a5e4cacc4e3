"""Find WordNet for NLTK offline: NLTK's own data path first, then Debian's `wordnet-base` copy.

`nltk.download` needs the internet. Debian's `wordnet-base` (+ `wordnet-sense-index`) installs
WordNet 3.0 under /usr/share/wordnet, but NLTK 3.10's reader only opens files inside its data roots
(symlinks escaping them are refused) and wants a `lexnames` file Debian does not ship. So the
Debian files are copied once into anchorlab's cache (`<cache>/nltk_data/corpora/wordnet/`), which
is added to `nltk.data.path`, and `lexnames` is written there from the table in lexnames(5WN).
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from ..errors import UserError

log = logging.getLogger("anchorlab")

DEBIAN_DIR = Path("/usr/share/wordnet")
RESOURCE = "corpora/wordnet"
# The files NLTK's WordNetCorpusReader opens (its _FILES), lexnames excepted: written by us.
FILES = ("cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb", "data.adj",
         "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc", "verb.exc")
# WordNet 3.0's lexicographer files (lexnames(5WN)): number = position, category 1 noun 2 verb 3 adj 4 adv.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

HOW_TO_GET = (
    "WordNet was not found. Either install Debian's copy (`sudo apt-get install wordnet-base "
    "wordnet-sense-index`; scripts/setup.sh does this) or, with internet access, run "
    "`python -c \"import nltk; nltk.download('wordnet')\"`"
)


class WordNetMissing(UserError):
    pass


def cache_data_dir() -> Path:
    """anchorlab's own NLTK data root (added to nltk.data.path when WordNet is looked up)."""
    return Path(os.environ.get("ANCHORLAB_CACHE") or Path.home() / ".cache" / "anchorlab") / "nltk_data"


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def install_from_debian(source: Path = DEBIAN_DIR, data_dir: Path | None = None) -> Path:
    """Copy Debian's WordNet into `data_dir/corpora/wordnet` (atomically) and write `lexnames`."""
    data_dir = data_dir or cache_data_dir()
    target = data_dir / RESOURCE
    if (target / "lexnames").exists():
        return target
    missing = [f for f in FILES if not (source / f).is_file()]
    if missing:
        raise WordNetMissing(f"{source} lacks {', '.join(missing)}. {HOW_TO_GET}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for name in FILES:
            shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_text())
        try:
            tmp.rename(target)  # a concurrent installer either wins or finds ours complete
        except OSError:
            if not (target / "lexnames").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("WordNet: copied Debian's %s into %s", source, target)
    return target


def locate(source: Path = DEBIAN_DIR) -> tuple[object, str]:
    """(root NLTK can open, where it came from): NLTK's data path, else the Debian copy."""
    import nltk

    for attempt in ("nltk", "debian"):
        if attempt == "debian":
            if not (source / "data.noun").is_file():
                break
            install_from_debian(source)
        data_dir = str(cache_data_dir())
        if data_dir not in nltk.data.path:
            nltk.data.path.append(data_dir)
        try:
            root = nltk.data.find(RESOURCE)
        except LookupError:
            continue
        where = f"Debian wordnet-base ({source}, copied to {cache_data_dir() / RESOURCE})" if Path(
            str(root)).resolve() == (cache_data_dir() / RESOURCE).resolve() else f"NLTK data ({root})"
        return root, where
    raise WordNetMissing(HOW_TO_GET)


@functools.cache
def wordnet():
    """NLTK's WordNet reader (English only: the multilingual OMW data is not needed here)."""
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root, where = locate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": expected
        reader = WordNetCorpusReader(root, None)
    log.info("WordNet %s from %s", reader.get_version(), where)
    return reader
