"""Training, evaluation and ablation engine: metrics, pose-binned verification protocol, training loop."""
