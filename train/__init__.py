"""Teacher side of ecg-edge: dataset readers, synthetic data, shards, the model registry, the four papers' objectives, training and evaluation."""
