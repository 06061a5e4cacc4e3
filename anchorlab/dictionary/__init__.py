"""The answer entity dictionary (docs/method.md §1): surface forms per answer built from WordNet (optionally
verified), mapped to one tokenizer's ids, and its coverage on that tokenizer."""
