"""Companion package of *LLM Training Fundamentals*.

The subpackages mirror the book's parts:

- :mod:`llmtrain.optim`: optimizers, schedules and training-loop tools (Part I);
- :mod:`llmtrain.objectives`: losses and pretraining objectives (Part II);
- :mod:`llmtrain.pretraining`: data, scaling and the pretraining recipe (Part III);
- :mod:`llmtrain.posttraining`: fine-tuning and preference tuning (Part IV);
- :mod:`llmtrain.demos`: the interactive-demo helper and plotting, kept apart from the
  algorithms so that the algorithms never import matplotlib or ipywidgets.
"""

__version__ = "0.1.0"
