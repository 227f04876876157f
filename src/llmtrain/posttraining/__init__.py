"""Part IV, Post-training: supervised fine-tuning, parameter-efficient methods and preference
tuning.

The chapters of this part are still being written; their algorithms will live here.
"""
