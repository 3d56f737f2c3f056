"""Distributed-training strategies. Start at ``contract.py`` (what a strategy is), then
``base.py`` (the PyTorch side of it) and ``registry.py`` (name -> class). This package's
own import is free of torch, so the contract can be read by configuration and prediction."""
