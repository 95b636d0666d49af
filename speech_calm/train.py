"""python -m speech_calm.train RECIPE.yaml [section.key=value ...]: run a recipe's stages into its run directory.

Each stage (e.g. `encoder` then `compose`) trains with one loop (`speech_calm.training.loop.fit`), resumes
from its last checkpoint by default, and is skipped when already complete. Multi-GPU: `torchrun --nproc_per_node N -m
speech_calm.train RECIPE.yaml` (DDP; frozen towers are replicated, only trainable weights are synchronised;
gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import sys

from speech_calm.schema import ConfigError
from speech_calm.training.loop import NonFiniteLossError, run
from speech_calm.training.recipe import load_recipe


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nexample: python -m speech_calm.train recipes/telugu.yaml compose.train.max_steps=100")
        return 0 if argv else 2
    try:
        recipe = load_recipe(argv[0], argv[1:])
        run(recipe)
    except (ConfigError, FileNotFoundError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
