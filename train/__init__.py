"""Teacher side of ecg-edge: dataset readers, synthetic data, shards (models and objectives follow)."""
