"""Task definitions: generated arithmetic now; every task is JSONL data plus lm-eval YAML views."""
