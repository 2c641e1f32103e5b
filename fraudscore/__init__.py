"""Real-time credit-card fraud scoring: training, model store entry, and the serving pipeline."""
