from __future__ import annotations

import pytest

from star1.config import CollectConfig, ConfigError, load_config, parse_config
from tests.conftest import write


def test_defaults_are_the_papers_thresholds():
    c = CollectConfig(sources=["x"])
    assert (c.tfidf_threshold, c.embed_threshold, c.embed_decontam_threshold, c.decontam_ngram) == (
        0.6,
        0.7,
        0.7,
        8,
    )
    assert c.embedding.model == "all-MiniLM-L6-v2"


def test_bad_field_names_path_and_expectation(tmp_path):
    f = write(tmp_path / "c.yaml", "collect:\n  sources: [a]\n  tfidf_threshold: high\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert "collect.tfidf_threshold" in str(e.value) and "valid number" in str(e.value)


def test_unknown_key_rejected(tmp_path):
    f = write(tmp_path / "c.yaml", "collect:\n  sources: [a]\n  tfidf_treshold: 0.5\n")
    with pytest.raises(ConfigError, match=r"collect\.tfidf_treshold"):
        load_config(f)


def test_duplicate_yaml_key_rejected(tmp_path):
    f = write(tmp_path / "c.yaml", "store:\n  uri: a\n  uri: b\n")
    with pytest.raises(ConfigError, match="duplicate key 'uri' at line 3"):
        load_config(f)


def test_overrides_parse_values_and_index_lists(tmp_path):
    f = write(tmp_path / "c.yaml", "collect:\n  sources:\n    - {name: s, loader: {uri: a.txt}}\n")
    cfg = load_config(f, ["collect.tfidf_threshold=0.5", "collect.sources.0.ngram=5", "ray.enabled=false"])
    assert cfg.collect.tfidf_threshold == 0.5 and cfg.collect.sources[0].ngram == 5 and not cfg.ray.enabled
    assert cfg.base_dir == str(tmp_path.resolve())
    with pytest.raises(ConfigError, match="not an index"):
        load_config(f, ["collect.sources.3.ngram=5"])
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config(f, ["collect.tfidf_threshold"])


def test_source_spec_validation():
    with pytest.raises(ConfigError, match=r"collect.sources.0.SourceSpec.filters.0.value|needs a list"):
        parse_config(
            {
                "collect": {
                    "sources": [
                        {
                            "name": "s",
                            "loader": {"uri": "a.csv"},
                            "prompt_column": "p",
                            "filters": [{"column": "c", "op": "in", "value": "x"}],
                        }
                    ]
                }
            }
        )
    with pytest.raises(ConfigError, match="prompt_column is required"):
        parse_config({"collect": {"sources": [{"name": "s", "loader": {"kind": "hf", "path": "a/b"}}]}})
