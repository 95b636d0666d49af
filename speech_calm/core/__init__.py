"""CALM itself, knowing no speech, no Telugu and no recipe: the tower contract, bridges, the composition,
search, the loss, checkpoints, and the baselines it is measured against (prefix projector, LoRA, fine-tuning)."""

