"""Training engine: configs, the training loop and its parts (batches, checkpoints, DDP, logging), ablation, publishing."""
