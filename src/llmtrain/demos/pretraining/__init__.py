"""Demos of Part III, Pretraining."""
