"""Tasks, in layers that import only the layers below them: `lm_eval_tasks` (lm-eval's own tasks), `views` (a task
folder: JSONL data, task.json, lm-eval YAML views), `arithmetic` and `bigbench` (task makers), `catalog` (names ->
makers)."""
