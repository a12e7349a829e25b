"""Tasks, in layers that import only the layers below them: `shipped` (the BIG-bench files that ship) and
`lm_eval_tasks` (lm-eval's own tasks), `views` (a task folder: JSONL data, task.json, lm-eval YAML views),
`arithmetic` and `bigbench` (task makers), `catalog` (names -> makers)."""
