"""Dataset readers (PTB-XL, PhysioNet/CinC 2017, MIT-BIH), the synthetic generator, downloads and shards.

Every reader follows one protocol: `name`, `label_names`, `multilabel`, `ids(split)`, `read(id) -> Record`.
Heavy imports (wfdb, neurokit2) happen inside the reader modules, not here.
"""
