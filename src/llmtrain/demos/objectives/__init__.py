"""Demos of Part II, Objectives."""
