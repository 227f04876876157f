"""Demos of Part I, Optimization."""
