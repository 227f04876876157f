"""Demos of Part IV, Post-training."""
