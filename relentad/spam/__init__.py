"""Statistical spam classifier: pure tokenizer, chi-square classifier, training from Junk moves."""
