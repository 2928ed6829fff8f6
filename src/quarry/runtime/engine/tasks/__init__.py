"""One module per task type; each exposes ``run(ctx, task, scope, key) -> StepResult``."""
