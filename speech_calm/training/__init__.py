"""Training: the recipe (strict YAML, dotted overrides), the loop (fit, run, metrics log) and the stages."""

