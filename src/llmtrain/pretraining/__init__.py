"""Part III, Pretraining: data pipelines, scaling laws and the pretraining recipe.

The chapters of this part are still being written; their algorithms will live here.
"""
