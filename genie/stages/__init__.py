"""Stages plug a model, its loss and its evaluation into the one training loop."""
