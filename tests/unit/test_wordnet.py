"""WordNet offline: NLTK's data path first, else Debian's wordnet-base copied into anchorlab's cache."""
import gzip
import re
import warnings
from pathlib import Path

import nltk
import pytest
from nltk.corpus.reader.wordnet import WordNetCorpusReader

from anchorlab.dictionary import wordnet as wnmod
from anchorlab.dictionary.build import wordnet_candidates

DEBIAN = Path("/usr/share/wordnet")
needs_debian = pytest.mark.skipif(not (DEBIAN / "data.noun").is_file(),
                                  reason="Debian wordnet-base not installed (scripts/setup.sh installs it)")
LEXNAMES_MAN = Path("/usr/share/man/man5/lexnames.5WN.gz")


@pytest.mark.skipif(not LEXNAMES_MAN.is_file(), reason="lexnames(5WN) man page not installed")
def test_embedded_lexnames_match_the_man_page():
    table = re.findall(r"^(\d\d)\t(\S+)", gzip.decompress(LEXNAMES_MAN.read_bytes()).decode(), re.M)
    assert [name for _, name in table] == wnmod.LEXNAMES and [int(n) for n, _ in table] == list(range(45))
    assert wnmod.lexnames_text().splitlines()[5] == "05\tnoun.animal\t1"


@needs_debian
def test_debian_copy_is_found_when_nltk_has_none(tmp_path, monkeypatch):
    monkeypatch.setenv("ANCHORLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])  # no user-installed WordNet
    root, where = wnmod.locate()
    target = tmp_path / "cache" / "nltk_data" / "corpora" / "wordnet"
    assert Path(str(root)).resolve() == target.resolve() and "Debian wordnet-base" in where
    assert (target / "lexnames").read_text() == wnmod.lexnames_text()
    assert not any(p.is_symlink() for p in target.iterdir())  # NLTK refuses links escaping its roots
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = WordNetCorpusReader(root, None)
    assert reader.get_version() == "3.0"
    assert "domestic_dog" in reader.synset("dog.n.01").lemma_names()
    assert reader.morphy("eating", "v") == "eat"
    assert wnmod.locate()[0] == root  # second time: already installed, nothing copied


def test_nltk_data_path_comes_first(tmp_path, monkeypatch):
    own = tmp_path / "nltk_data" / "corpora" / "wordnet"
    own.mkdir(parents=True)
    monkeypatch.setenv("ANCHORLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    root, where = wnmod.locate(source=tmp_path / "no-debian")
    assert Path(str(root)).resolve() == own.resolve() and where.startswith("NLTK data")


def test_neither_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ANCHORLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    with pytest.raises(wnmod.WordNetMissing) as err:
        wnmod.locate(source=tmp_path / "no-debian")
    assert "apt-get install wordnet-base wordnet-sense-index" in str(err.value)
    assert "nltk.download('wordnet')" in str(err.value)


@needs_debian
def test_candidates_from_wordnet():
    wn = wnmod.wordnet()
    assert wordnet_candidates("dog", wn)[:1] == ["domestic dog"]
    assert "chase" not in wordnet_candidates("dog", wn)  # a rare verb sense of "dog" is not a synonym
    assert wordnet_candidates("eating", wn)[0] == "eat"
    assert {"playing", "golf", "play"} <= set(wordnet_candidates("playing golf", wn))
    assert "Red River" not in wordnet_candidates("red", wn)  # capitalised names skipped for lower-case answers
    assert "white fox" in wordnet_candidates("Arctic fox", wn)
